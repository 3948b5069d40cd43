import re
from pathlib import Path

import yaml

from rewardlab.config import load_config, reference_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_readme_config_reference_is_generated_from_the_code():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- config-reference:start -->\n(.*)\n<!-- config-reference:end -->", readme, re.S).group(1)
    assert block.strip() == reference_markdown().strip(), "run: python -m rewardlab.config and paste into README"


def test_example_configs_load():
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        method = path.stem.split("_")[0]
        cfg = load_config(method, path)
        assert cfg.method == method and yaml.safe_load(path.read_text())


def test_demo_settings_match_the_example_configs():
    from rewardlab.demo import DEMO_GRPO, DEMO_SFT

    for name, settings in [("sft_arithmetic.yaml", DEMO_SFT), ("grpo_arithmetic.yaml", DEMO_GRPO)]:
        example = yaml.safe_load((ROOT / "examples" / name).read_text())
        for key, value in settings.items():
            assert example[key] == value, (name, key)
