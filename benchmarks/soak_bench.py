"""Soak: does the generation node's memory level off over thousands of goals?

Starts the real generation node (and, unless --no-predictor, the predictor node) on the tiny test
model in a private ROS domain, sends N goals one after another through TimeBillClient, samples
the node's resident memory (VmRSS from /proc) every K goals, prints a table, and writes a plot of
RSS against goals (docs/bench/soak_rss.png by default). Issue 12 saw 500 -> 568 MB over 600 goals.
The client's side is sampled too: this process's RSS and the futures its ActionClient holds
(``--rclpy-as-is`` leaves rclpy 9.1's orphaned goal futures in place, to compare).

    source scripts/env.sh
    python benchmarks/soak_bench.py --goals 5000 --every 250     # ~5 to 10 minutes on 2 cores
    python benchmarks/soak_bench.py --goals 300 --every 50       # a quick check
    python benchmarks/soak_bench.py --goals 2000 --every 250 --rclpy-as-is --plot /tmp/as_is.png
"""
from __future__ import annotations

import argparse
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def tiny_params(work: pathlib.Path, autostart: bool = True) -> pathlib.Path:
    """A parameter file for the nodes on the tiny test model, 16-token answers, cache in ``work``."""
    params = work / "tiny.yaml"
    params.write_text(f"""/**:
  ros__parameters:
    model: "test:tiny"
    cache_dir: "{work / 'cache'}"
    profile_max_tokens: 256
    constant_expected_tokens: 16
    default_max_new_tokens: 16
    autostart: {str(autostart).lower()}
""")
    return params


def start_nodes(work: pathlib.Path, env: dict, predictor: bool) -> list[subprocess.Popen]:
    ros = ["--ros-args", "-r", "__ns:=/timebill", "--params-file", str(tiny_params(work))]
    names = ["generation_node"] + (["predictor_node"] if predictor else [])
    return [subprocess.Popen([sys.executable, "-m", f"timebill_ros.{n}", *ros], env=env, start_new_session=True,
                             stdout=open(work / f"{n}.log", "w"), stderr=subprocess.STDOUT) for n in names]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--goals", type=int, default=5000)
    ap.add_argument("--every", type=int, default=250, help="sample RSS every this many goals")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--no-predictor", action="store_true", help="the generation node alone (local estimates)")
    ap.add_argument("--plot", default=str(REPO / "docs" / "bench" / "soak_rss.png"))
    ap.add_argument("--domain", type=int, default=77)
    ap.add_argument("--rclpy-as-is", action="store_true",
                    help="the client without timebill_ros.client's cleanup of rclpy's orphaned goal futures")
    args = ap.parse_args()

    work = pathlib.Path(tempfile.mkdtemp(prefix="timebill-soak-"))
    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_HOME=str(work), ROS_LOG_DIR=str(work / "log"), PYTHONUNBUFFERED="1")
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    procs = start_nodes(work, env, not args.no_predictor)
    gen = procs[0]
    samples: list[tuple[int, float, float, float, int]] = []  # goals, node RSS MB, s, client RSS MB, futures
    outcomes: dict[int, int] = {}
    try:
        import rclpy

        import timebill_ros.client
        from timebill_ros.client import TimeBillClient

        if args.rclpy_as_is:
            timebill_ros.client.forget_orphaned_futures = lambda action: None
        ctx = rclpy.Context()
        rclpy.init(context=ctx, domain_id=args.domain, args=[])
        with TimeBillClient(context=ctx) as client:
            if not client.wait_until_ready(timeout=180, estimator=not args.no_predictor):
                print(f"nodes not ready; logs in {work}", file=sys.stderr)
                return 2
            t0 = time.monotonic()

            def sample(i: int):
                samples.append((i, rss_mb(gen.pid), time.monotonic() - t0, rss_mb(os.getpid()),
                                len(client._action._futures)))

            sample(0)
            for i in range(1, args.goals + 1):
                r = client.ask(f"Soak question {i}: where is the cup?", 30.0, max_new_tokens=args.max_new_tokens,
                               policy="kill", timeout=60.0)
                outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
                if i % args.every == 0 or i == args.goals:
                    sample(i)
                    print(f"  {i:6d} goals  node RSS {samples[-1][1]:7.1f} MB  {samples[-1][2]:7.1f} s  client RSS "
                          f"{samples[-1][3]:7.1f} MB, {samples[-1][4]} futures", flush=True)
        ctx.try_shutdown()
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)

    from timebill_ros.convert import OUTCOME_NAMES

    print(f"\ngeneration node and client RSS over {args.goals} goals (tiny test model, max_new_tokens "
          f"{args.max_new_tokens}, {'no predictor' if args.no_predictor else 'with the predictor node'}"
          f"{', rclpy as is' if args.rclpy_as_is else ''})")
    print(f"{'goals':>7} {'node MB':>8} {'delta MB':>9} {'seconds':>8} {'goals/s':>8} {'client MB':>10} {'futures':>8}")
    for k, (n, mb, s, cmb, futs) in enumerate(samples):
        rate = (n - samples[k - 1][0]) / max(s - samples[k - 1][2], 1e-9) if k else float("nan")
        print(f"{n:7d} {mb:8.1f} {mb - samples[0][1]:9.1f} {s:8.1f} {rate:8.1f} {cmb:10.1f} {futs:8d}")
    half = [mb for n, mb, *_ in samples if n >= args.goals // 2]
    print(f"outcomes: {', '.join(f'{OUTCOME_NAMES.get(k, k)} {v}' for k, v in sorted(outcomes.items()))}")
    print(f"growth over the second half: {half[-1] - half[0]:+.1f} MB; over the whole run: "
          f"{samples[-1][1] - samples[0][1]:+.1f} MB; client: {samples[-1][3] - samples[0][3]:+.1f} MB, "
          f"{samples[-1][4]} futures held")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    goals = [n for n, *_ in samples]
    ax.plot(goals, [x[1] - samples[0][1] for x in samples], marker="o", ms=3, label="generation node")
    ax.plot(goals, [x[3] - samples[0][3] for x in samples], marker="s", ms=3,
            label="client" + (" (rclpy as is)" if args.rclpy_as_is else ""))
    ax.set_xlabel("goals served")
    ax.set_ylabel("RSS growth since start (MB)")
    ax.legend()
    ax.set_title(f"Soak: {args.goals} goals, tiny test model")
    ax.grid(alpha=0.3)
    pathlib.Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
