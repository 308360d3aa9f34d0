"""Does the length predictor read an explicit length? Requests of our own making (none is in the
labelled mix), asking for one sentence, about 100 words, or a 500-word essay, predicted by the
shipped head (or --head FILE), with the label cap as the job's limit.

    source scripts/env.sh
    python benchmarks/explicit_length_bench.py                      # the shipped head
    git show 3d73ec4:timebill_ros/timebill/data/rlp_head_SmolLM2-135M-Instruct.pt > /tmp/old.pt
    python benchmarks/explicit_length_bench.py --head /tmp/old.pt   # the previous head
"""
from __future__ import annotations

import argparse
import statistics

from timebill.config import load_config
from timebill.rlp.predictor import RLPPredictor
from timebill.runtime import load_configured_model

ASKS = {
    "one sentence": ["In one sentence, explain what a lidar sensor measures.", "In one sentence, what does an IMU do?",
                     "Describe in one sentence how a robot vacuum finds its dock.",
                     "In one sentence: why do robot arms need inverse kinematics?",
                     "Explain in a single sentence what SLAM stands for.", "In one sentence, tell me what a gripper is."],
    "about 100 words": ["In about 100 words, explain how a PID controller works.",
                        "In about 100 words, explain what a depth camera is."],
    "500-word essay": ["Write a detailed 500-word essay on how warehouse robots navigate.",
                       "Write a detailed 500-word essay about the history of industrial robots.",
                       "Write a 500-word essay explaining how self-driving cars perceive the road.",
                       "Write a detailed 500-word essay on safety rules for robots working near people."],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--head", default=None)
    args = ap.parse_args()
    loaded = load_configured_model(load_config())
    predictor = RLPPredictor(loaded, args.head)
    for kind, prompts in ASKS.items():
        preds = [predictor.predict(loaded.encode_chat(p), 384) for p in prompts]
        points = [p.predicted_tokens for p in preds]
        print(f"{kind:16s} predicted {points}, median {statistics.median(points):g}; "
              f"P(<= 64 tokens) {[round(p.distribution.p_at_most(64), 2) for p in preds]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
