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


def _methods_train_accepts() -> list[str]:
    from rewardlab.config import METHOD_PRESETS
    from rewardlab.trainers import TRAINERS

    # train() dispatches through TRAINERS and loads its config through METHOD_PRESETS: a name missing
    # from either one is refused, so the two tables must agree
    assert set(TRAINERS) == set(METHOD_PRESETS)
    return sorted(TRAINERS)


def test_cli_help_lists_every_method_train_accepts(capsys):
    from rewardlab.cli import main

    try:
        main(["--help"])
    except SystemExit as done:
        assert done.code == 0
    words = set(re.findall(r"[a-z_]+", capsys.readouterr().out))
    missing = [m for m in _methods_train_accepts() if m not in words]
    assert not missing, f"`rewardlab --help` does not name: {missing}"


def test_train_docstring_lists_every_method_train_accepts():
    import rewardlab

    words = set(re.findall(r"[a-z_]+", rewardlab.train.__doc__))
    missing = [m for m in _methods_train_accepts() if m not in words]
    assert not missing, f"rewardlab.train's docstring does not name: {missing}"


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a markdown file's headings: lower case, punctuation dropped, spaces -> '-'."""
    headings = re.findall(r"^#+ +(.+?) *$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_package_cites_only_markdown_files_and_sections_that_exist():
    broken = set()
    for path in sorted((ROOT / "rewardlab").rglob("*.py")):
        source = path.read_text()
        name = str(path.relative_to(ROOT))
        for cited, anchor in re.findall(r"([\w./-]+\.md)(?:#([\w-]+))?", source):
            target = ROOT / cited
            if not target.is_file():
                broken.add((name, cited))
            elif anchor and anchor not in _anchors(target.read_text()):
                broken.add((name, f"{cited}#{anchor}"))
    assert not broken, f"citations of missing files or sections: {sorted(broken)}"
