import builtins
import json
import math
import sys

import pytest
import torch

from rewardlab.monitor import PLOT_GROUPS, RunLogger, format_table, plot_run, progress, read_metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# -------------------------------------------------------------------------------------------- RunLogger


def test_log_appends_full_precision_json_lines(tmp_path):
    run = tmp_path / "run"
    logger = RunLogger(run, tensorboard=False)
    logger.log(1, {"loss": 0.1 + 0.2, "reward": torch.tensor(0.5), "n": 3})
    # flushed at once: readable before close
    assert lines(run / "metrics.jsonl") == [{"step": 1, "loss": 0.30000000000000004, "reward": 0.5, "n": 3}]
    logger.log(2, {"loss": math.nan, "kl": math.inf})
    logger.close()
    raw = (run / "metrics.jsonl").read_text().splitlines()
    assert raw[1] == '{"step": 2, "loss": null, "kl": null}'  # strict JSON: non-finite -> null
    rows = read_metrics(run)
    assert rows[0]["loss"] == 0.30000000000000004 and math.isnan(rows[1]["loss"])


def test_log_rejects_step_key_and_non_scalars(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as logger:
        with pytest.raises(ValueError, match=r"RunLogger.log\(step=3\).*own 'step' key"):
            logger.log(3, {"step": 3})
        with pytest.raises(TypeError, match=r"RunLogger.log\(step=4\): metric 'x' is a list"):
            logger.log(4, {"x": [1, 2]})


def test_log_samples(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as logger:
        logger.log_samples(5, [{"prompt": "1+1=", "completion": "2", "reward": 1.0, "ids": torch.tensor([1, 2])}])
        logger.log_samples(6, [{"prompt": "é", "reward": math.nan}])
    assert lines(tmp_path / "samples.jsonl") == [
        {"step": 5, "prompt": "1+1=", "completion": "2", "reward": 1.0, "ids": [1, 2]},
        {"step": 6, "prompt": "é", "reward": None},
    ]


def test_resume_truncates_later_steps(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as logger:
        for step in range(1, 6):
            logger.log(step, {"loss": float(step)})
            logger.log_samples(step, [{"completion": f"c{step}"}])
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 6, "loss": ')  # a line torn by a crash mid-write

    with RunLogger(tmp_path, tensorboard=False, resume_step=3) as logger:
        assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]
        assert [r["step"] for r in lines(tmp_path / "samples.jsonl")] == [1, 2, 3]
        logger.log(4, {"loss": 40.0})
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]
    assert not list(tmp_path.glob("*.tmp"))  # the temp file was renamed into place


def test_resume_on_fresh_directory(tmp_path):
    with RunLogger(tmp_path / "new", tensorboard=False, resume_step=10) as logger:
        logger.log(11, {"loss": 1.0})
    assert read_metrics(tmp_path / "new") == [{"step": 11, "loss": 1.0}]


def test_tensorboard_events_written(tmp_path):
    pytest.importorskip("tensorboard")
    with RunLogger(tmp_path) as logger:
        logger.log(1, {"loss": 1.0, "phase": "warmup"})
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_missing_tensorboard_never_fails(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    for module in [m for m in sys.modules if m.startswith(("torch.utils.tensorboard", "tensorboard"))]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with RunLogger(tmp_path, tensorboard=True) as logger:
        logger.log(1, {"loss": 1.0})
    assert read_metrics(tmp_path) == [{"step": 1, "loss": 1.0}]
    assert not list(tmp_path.glob("events.out.tfevents.*"))


def test_read_metrics_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics file at"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{bad\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: invalid JSON"):
        read_metrics(tmp_path)


# ------------------------------------------------------------------------------------------------ plots


def write_run(run_dir, steps=40):
    with RunLogger(run_dir, tensorboard=False) as logger:
        for step in range(steps):
            logger.log(step, {
                "rewards/math/mean": step / steps + (0.1 if step % 2 else -0.1),
                "kl": math.nan if step == 3 else 0.01 * step,
                "completion_length": 10.0 + step,
                "loss": 1.0 / (step + 1),
                "lr": 1e-5,
            })
            if step % 10 == 0:
                logger.log(step, {"eval/accuracy": step / 100})


def test_plot_run_writes_one_valid_png_per_group(tmp_path):
    write_run(tmp_path)
    paths = plot_run(tmp_path, mark_steps=[(20, "hacking?")])
    assert sorted(p.name for p in paths) == ["accuracy.png", "kl.png", "length.png", "loss.png", "reward.png"]
    for path in paths:
        assert path.parent == tmp_path / "plots"
        assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert not list((tmp_path / "plots").glob(".*"))  # no temp files left


def test_plot_run_skips_groups_without_data_and_handles_all_nan(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as logger:
        logger.log(0, {"loss": 1.0, "entropy": math.nan})
        logger.log(1, {"loss": 0.5, "entropy": math.nan})
    assert [p.name for p in plot_run(tmp_path)] == ["loss.png"]


def test_plot_run_keys_and_custom_groups(tmp_path):
    write_run(tmp_path, steps=5)
    paths = plot_run(tmp_path, keys=["loss", "lr", "never_logged"])
    assert [p.name for p in paths] == ["loss.png", "lr.png"]  # "lr" is in no group: a file of its own
    paths = plot_run(tmp_path, groups={"schedule.png": ["lr"]})
    assert [p.name for p in paths] == ["schedule.png"]
    assert (tmp_path / "plots" / "schedule.png").read_bytes()[:8] == PNG_SIGNATURE


def test_plot_groups_constant_shape():
    assert all(name.endswith(".png") and prefixes for name, prefixes in PLOT_GROUPS.items())


# ------------------------------------------------------------------------------------ progress / tables


def test_progress_is_enabled_unless_disabled(capsys):
    bar = progress(3, "rollout")
    assert not bar.disable  # even though pytest's stderr is not a TTY
    bar.update(3)
    bar.close()
    assert "rollout" in capsys.readouterr().err
    assert progress(3, "quiet", disable=True).disable


def test_format_table_dicts_and_lists():
    table = format_table(
        [{"method": "grpo", "accuracy": 0.8125, "steps": 200}, {"method": "dpo", "accuracy": 0.5}]
    )
    assert table.splitlines() == [
        "method  accuracy  steps",
        "------  --------  -----",
        "grpo      0.8125    200",
        "dpo          0.5",
    ]
    table = format_table([["a", 1234567.0], ["bb", 0.0001]], headers=["name", "value"])
    assert table.splitlines() == [
        "name      value",
        "----  ---------",
        "a     1.235e+06",
        "bb    1.000e-04",
    ]
    with pytest.raises(ValueError, match="row 1 has 1 cells but there are 2 headers"):
        format_table([["a", 1], ["b"]], headers=["name", "value"])


def test_reward_length_correlation_worked_example():
    from rewardlab.monitor import reward_length_correlation

    # deviations (-1, 0, 1) and (1, -1, 0): covariance -1/3, variances 2/3 each -> -0.5
    assert reward_length_correlation([1.0, 2.0, 3.0], [3, 1, 2]) == pytest.approx(-0.5, abs=1e-12)
    assert math.isnan(reward_length_correlation([1.0, 2.0], [5, 5]))
    with pytest.raises(ValueError, match="3 rewards but 2 lengths"):
        reward_length_correlation([1.0, 2.0, 3.0], [1, 2])


# (proxy, gold) per evaluation: proxy climbs (with one dip); gold peaks at the second evaluation
HACKED = [(0.1, 0.5), (0.2, 0.6), (0.3, 0.55), (0.4, 0.5), (0.5, 0.45), (0.45, 0.4), (0.6, 0.3)]


def test_hacking_monitor_flags_proxy_up_gold_down_since_the_gold_peak(caplog):
    from rewardlab.monitor import HackingMonitor
    from rewardlab.monitor.hacking import ALARM, SQRT_KL

    monitor = HackingMonitor(patience=3)
    with caplog.at_level("WARNING"):
        logged = [monitor.update(10 * i, proxy, gold, kl=0.25 * i) for i, (proxy, gold) in enumerate(HACKED)]
    # gold peaks at step 10 (0.6, proxy 0.2); from step 20 on the proxy is above 0.2 and gold below 0.6:
    # streaks 1, 2, 3 -> alarm at step 40, and it stays on while that holds (the proxy's dip at step 50
    # is still above its level at the peak)
    assert [row[ALARM] for row in logged] == [0, 0, 0, 0, 1, 1, 1]
    assert monitor.alarms == [40, 50, 60]
    assert logged[4][SQRT_KL] == pytest.approx(1.0)  # sqrt(0.25 * 4)
    assert "peaked at step 10" in caplog.text and "since step 20" in caplog.text and "step 40" in caplog.text

    restored = HackingMonitor(patience=3)
    restored.load_state_dict(monitor.state_dict())
    assert restored.update(70, 0.7, 0.65, 2.0)[ALARM] == 0  # a new gold peak ends the streak
    assert [restored.update(80 + 10 * i, 0.8, 0.5, 2.0)[ALARM] for i in range(3)] == [0, 0, 1]
    # a proxy that fell below its level at the gold peak is not hacking, however far gold fell
    falling = HackingMonitor(patience=1)
    assert [falling.update(i, p, g, 0.0)[ALARM] for i, (p, g) in enumerate([(0.5, 0.6), (0.4, 0.3), (0.3, 0.1)])] == [0, 0, 0]


def test_hacking_monitor_catches_a_plateaued_proxy_over_a_sliding_gold():
    from rewardlab.monitor import HackingMonitor

    # the shape the step-to-step rule missed: the proxy rises, then hovers; gold peaks early and slides
    evals = [(3.0, 0.50), (3.5, 0.55), (3.9, 0.53), (3.85, 0.52), (3.95, 0.50), (3.9, 0.49)]
    monitor = HackingMonitor(patience=3, tolerance=0.01)
    flags = [monitor.update(i, p, g, 0.0)["hacking/alarm"] for i, (p, g) in enumerate(evals)]
    # below the 0.55 peak by more than 0.01 from the third evaluation on: 0.53, 0.52, 0.50, 0.49
    assert flags == [0, 0, 0, 0, 1, 1]


def test_hacking_monitor_tolerance_ignores_small_moves():
    from rewardlab.monitor import HackingMonitor

    monitor = HackingMonitor(patience=1, tolerance=0.12)
    flags = [monitor.update(i, p, g, 0.0)["hacking/alarm"] for i, (p, g) in enumerate(HACKED)]
    # gold is 0.05, 0.1, 0.15, 0.2, 0.3 below its 0.6 peak: only the last three exceed 0.12
    assert flags == [0, 0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="patience must be >= 1"):
        HackingMonitor(patience=0)
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        HackingMonitor(tolerance=-0.1)


def test_report_draws_gold_vs_proxy_and_marks_alarms(tmp_path, capsys):
    from rewardlab.cli import main
    from rewardlab.monitor import HackingMonitor

    monitor = HackingMonitor(patience=3)
    with RunLogger(tmp_path, tensorboard=False) as logger:
        for i, (proxy, gold) in enumerate(HACKED):
            logger.log(10 * i, {"reward": proxy, **monitor.update(10 * i, proxy, gold, kl=0.1 * i)})
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "alarms (proxy up, gold down) at steps: 40, 50, 60" in out
    for name in ["gold_vs_proxy.png", "hacking.png", "reward.png"]:
        assert (tmp_path / "plots" / name).stat().st_size > 1000, name
    assert main(["report", str(tmp_path / "missing")]) == 2
