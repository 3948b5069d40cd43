"""Which rewardlab files run from GRPO step 2 to the end of a 3-step run, in the order first called.

    python tools/step_files.py --label HEAD --out benchmarks/results/step_files_HEAD.txt
    git worktree add /tmp/old <rev> && PYTHONPATH=/tmp/old python tools/step_files.py --label <rev> --out ...

The rewardlab imported is whichever comes first on the path (PYTHONPATH picks an older checkout).
"""
import argparse
import sys
import tempfile
import threading
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--label", default="")
parser.add_argument("--out", default="")
args = parser.parse_args()
import rewardlab  # noqa: E402

seen, order, active = set(), [], {"on": False}
def prof(frame, event, arg):
    if event == "call" and active["on"]:
        f = frame.f_code.co_filename
        if "/rewardlab/" in f and "/tests/" not in f:
            rel = f.split("/rewardlab/", 1)[1]
            if rel not in seen:
                seen.add(rel)
                order.append(rel)
import rewardlab.monitor.runlog as runlog  # noqa: E402

orig = runlog.RunLogger.log
def log(self, step, metrics):
    active["on"] = step >= 1  # from the end of step 1's logging until the end of the run's steps
    return orig(self, step, metrics)
runlog.RunLogger.log = log
sys.setprofile(prof)
threading.setprofile(prof)
with tempfile.TemporaryDirectory() as tmp:
    rewardlab.train("grpo", {"model_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2},
        "output_dir": tmp, "max_steps": 3, "batch_size": 8, "num_generations": 4, "max_completion_length": 4, "eval_n": 2, "tensorboard": False, "logging_steps": 0, "eval_steps": 0})
sys.setprofile(None)
text = (f"{args.label}: {len(order)} files in {len({o.split('/')[0] for o in order if '/' in o})} folders "
        f"({rewardlab.__file__})\n" + " -> ".join(order) + "\n")
print(text, end="")
if args.out:
    Path(args.out).write_text(text)
