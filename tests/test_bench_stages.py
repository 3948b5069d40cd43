"""benchmarks/stages.py: a benchmark stage is reused only when it was trained with the same arguments."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bench_stages", ROOT / "benchmarks" / "stages.py")
stages = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stages)


class FakeTrainer:
    """Stands in for rewardlab.train: writes final/ and a summary, and counts its calls."""

    def __init__(self, stage_dir: Path):
        self.stage_dir = stage_dir
        self.calls = 0

    def train(self) -> dict:
        self.calls += 1
        (self.stage_dir / "final").mkdir(parents=True, exist_ok=True)
        summary = {"trained": self.calls}
        (self.stage_dir / "summary.json").write_text(json.dumps(summary))
        return summary

    def load(self) -> dict:
        return {"loaded": json.loads((self.stage_dir / "summary.json").read_text())["trained"]}


def test_same_arguments_reuse_the_stage(tmp_path):
    stage_dir = tmp_path / "sft"
    fake = FakeTrainer(stage_dir)
    args = {"method": "sft", "max_steps": 100, "seed": 0}
    assert stages.run_stage(stage_dir, args, fake.train, fake.load) == {"trained": 1}
    assert stages.reusable(stage_dir, dict(reversed(args.items())))  # key order does not matter
    assert stages.run_stage(stage_dir, dict(args), fake.train, fake.load) == {"loaded": 1}
    assert fake.calls == 1


def test_changed_arguments_retrain_and_keep_the_old_folder(tmp_path):
    stage_dir = tmp_path / "sft"
    fake = FakeTrainer(stage_dir)
    stages.run_stage(stage_dir, {"method": "sft", "max_steps": 100}, fake.train, fake.load)
    changed = {"method": "sft", "max_steps": 200}
    assert not stages.reusable(stage_dir, changed)
    assert stages.run_stage(stage_dir, changed, fake.train, fake.load) == {"trained": 2}
    assert fake.calls == 2
    assert json.loads((tmp_path / "sft.replaced-1" / "summary.json").read_text()) == {"trained": 1}
    assert stages.reusable(stage_dir, changed) and not stages.reusable(stage_dir, {"method": "sft", "max_steps": 100})


def test_a_folder_without_a_record_or_without_final_is_not_reused(tmp_path):
    old = tmp_path / "old"
    (old / "final").mkdir(parents=True)  # a stage from before stage_args.json existed
    args = {"method": "rm"}
    assert not stages.reusable(old, args)
    unfinished = tmp_path / "unfinished"
    fake = FakeTrainer(unfinished)
    stages.run_stage(unfinished, args, fake.train, fake.load)
    (unfinished / "final").rmdir()
    assert not stages.reusable(unfinished, args)


def test_config_file_contents_and_upstream_stages_are_part_of_the_hash(tmp_path):
    config = tmp_path / "sft.yaml"
    config.write_text("max_steps: 100\n")
    args = {"method": "sft", "config": config}
    before = stages.stage_hash(args)
    config.write_text("max_steps: 200\n")
    assert stages.stage_hash(args) != before  # same path, other contents

    upstream = tmp_path / "sft_stage"
    fake = FakeTrainer(upstream)
    stages.run_stage(upstream, {"max_steps": 1}, fake.train, fake.load)
    downstream = {"method": "rm", "model": str(upstream / "final")}
    first = stages.stage_hash(downstream)
    stages.run_stage(upstream, {"max_steps": 2}, fake.train, fake.load)  # the upstream stage is retrained
    assert stages.stage_hash(downstream) != first
