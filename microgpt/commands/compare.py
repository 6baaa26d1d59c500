"""`python -m microgpt compare RUN_DIR RUN_DIR ...`: trained runs side by side.

Prints the options that differ between the runs and their final losses as tables,
a few samples from each (the same seed for all, drawn as `sample` draws them), and
writes one PNG of every run's training and validation curves with the yardsticks.
The work is in `microgpt.compare` and `microgpt.viz.compare`.
"""

from microgpt.backend import BACKENDS
from microgpt.cli import non_negative_int, png_path, positive_float, positive_int
from microgpt.run import TEXT_SAMPLE_CHARS


def add_parser(subparsers):
    p = subparsers.add_parser(
        "compare", help="compare trained runs: curves, config differences, final losses, samples",
        description="Compare two or more runs (the --out directories of train runs): print the options "
                    "that differ and each run's final losses, draw a few samples from each with the same "
                    "seed, and write one PNG of their training and validation curves against the "
                    "yardsticks. Runs of different sizes, lengths or vocabularies compare fine.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by `microgpt train`")
    p.add_argument("--out", type=png_path, default="compare.png", help="the picture to write (default compare.png)")
    p.add_argument("--num", type=non_negative_int, default=5, help="samples from each run; 0: none (default 5)")
    p.add_argument("--seed", type=non_negative_int, default=42,
                   help="one seed for every run's samples (default 42, the seed train uses by default)")
    p.add_argument("--temperature", type=positive_float, default=0.5,
                   help="sampling temperature (default 0.5, as sample)")
    p.add_argument("--max-new-tokens", type=positive_int, default=None, metavar="N",
                   help="characters per sample (default: names until they end; 200 for a text)")
    p.add_argument("--backend", choices=BACKENDS, default="scalar",
                   help="engine that draws the samples (default scalar; both give the same text)")
    p.set_defaults(run=run)


def run(args):
    from microgpt.compare import (config_differences, draw_samples, final_losses, format_samples, format_table,
                                  load_runs, yardstick_groups)
    from microgpt.viz.compare import plot_comparison

    runs = load_runs(args.run_dirs)
    labels = [r.label for r in runs]
    differences = config_differences(runs)
    if differences:
        print(format_table("options that differ", labels, differences))
    else:
        print("no option differs: the runs have the same model, training options and data")
    print()
    print(format_table("final losses", labels, final_losses(runs)))
    if args.num:
        samples = [draw_samples(r, args.num, args.seed, args.temperature,
                                args.max_new_tokens or (None if r.lines_mode else TEXT_SAMPLE_CHARS), args.backend)
                   for r in runs]
        print(f"\nsamples (seed {args.seed}, temperature {args.temperature:g}):")
        print(format_samples(runs, samples))
    plot_comparison([(r.label, r.log, r.evals) for r in runs], yardstick_groups(runs), args.out)
    print(f"\nwrote {args.out}")
    return 0
