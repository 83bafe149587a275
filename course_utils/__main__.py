"""Command line: ``python -m course_utils {doctor,release,execute,grade,bench}``."""

from __future__ import annotations

import argparse
import sys


def _release(args: argparse.Namespace) -> int:
    from .release import ReleaseError, release

    if args.format == "nbgrader":
        from .nbgrader_export import export_nbgrader

        if not args.dir:
            print("release --format nbgrader needs a target DIR", file=sys.stderr)
            return 2
        written = export_nbgrader(args.root, args.dir, chapters=args.chapters)
        print(f"Wrote an nbgrader course source to {args.dir} ({len(written)} assignment(s)):")
        for p in written:
            print(f"  {p}")
        print(f"Next: cd {args.dir} && nbgrader generate_assignment <name> (needs .venv/bin on PATH)")
        return 0
    try:
        changed = release(args.root, check=args.check)
    except ReleaseError as err:
        print(f"release: {err}", file=sys.stderr)
        return 2
    if args.check:
        if changed:
            print("Stale exercise notebooks (run `python -m course_utils release`):")
            for p in changed:
                print(f"  {p}")
            return 1
        print("exercises/ are up to date with solutions/.")
        return 0
    print(f"Wrote {len(changed)} exercise notebook(s)." if changed else "exercises/ already up to date.")
    return 0


def _execute(args: argparse.Namespace) -> int:
    from .notebooks import execute_notebook

    for path in args.notebooks:
        print(f"executing {path} …", flush=True)
        execute_notebook(path, timeout=args.timeout)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check the installation and say what to fix")
    sub.add_parser("kernel", help="install the course Jupyter kernel into this environment")
    p = sub.add_parser("release", help="generate exercises/ from solutions/")
    p.add_argument("--check", action="store_true", help="only verify; exit 1 when stale")
    p.add_argument("--root", default=".", help="course root (holds solutions/ and exercises/)")
    p.add_argument("--format", choices=["exercises", "nbgrader"], default="exercises")
    p.add_argument("dir", nargs="?", help="with --format nbgrader: the nbgrader course directory to write")
    p.add_argument("--chapters", nargs="*", help="with --format nbgrader: chapters to export (default all)")
    p = sub.add_parser("progress", help="your exercise notebooks: ✓ / ✗ / not started per exercise")
    p.add_argument("folder", nargs="?", default=None, help="default: exercises/")
    p.add_argument("--sandbox", choices=["auto", "bwrap", "none"], default="auto")
    p = sub.add_parser("gradescope", help="write a Gradescope autograder zip for one chapter")
    p.add_argument("chapter")
    p.add_argument("--out", default="autograder.zip")
    p = sub.add_parser("gradescope-run", help="(inside Gradescope) grade /autograder/submission")
    p.add_argument("chapter")
    p.add_argument("--submission", required=True)
    p.add_argument("--results", required=True)
    sub.add_parser("start", help="write START.ipynb (the start page `make lab` opens)")
    p = sub.add_parser("site", help="static HTML of the executed lessons + index (build/site)")
    p.add_argument("--out", default="build/site")
    p.add_argument("--executed", default="build/executed", help="notebooks nbval executed (reused)")
    p.add_argument("--only", nargs="*", help="lesson slugs to include (default: all)")
    p.add_argument("--root", default=".")
    p = sub.add_parser("execute", help="run notebooks, keep only NBVAL_CHECK_OUTPUT outputs")
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--timeout", type=int, default=600)
    sub.add_parser("grade", help="grade submissions (see `grade --help`)", add_help=False)
    sub.add_parser("bench", help="measure the course benchmark report", add_help=False)

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("grade", "bench"):
        if argv[0] == "grade":
            from .grading.cli import main as grade_main

            return grade_main(argv[1:])
        from .bench import main as bench_main

        return bench_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "doctor":
        from .env import doctor

        return doctor()
    if args.command == "kernel":
        from .jupyter import install_kernelspec

        print(f"Installed kernel 'compression-course' in {install_kernelspec()}")
        return 0
    if args.command == "release":
        return _release(args)
    if args.command == "progress":
        from .progress import progress

        table = progress(args.folder, sandbox=args.sandbox)
        print(table)
        return 0 if all(r.status == "passed" for r in table.rows) else 1
    if args.command == "gradescope":
        from .gradescope import build_bundle

        print(f"Wrote {build_bundle(args.chapter, args.out)}")
        return 0
    if args.command == "gradescope-run":
        from .gradescope import run

        data = run(args.chapter, args.submission, args.results)
        print(f"score {data['score']} / {data['max_score']}")
        return 0
    if args.command == "start":
        from .site import write_start

        print(f"Wrote {write_start('.')}")
        return 0
    if args.command == "site":
        from .site import build_site

        index = build_site(args.root, args.out, executed_dir=args.executed, only=args.only)
        print(f"Wrote {index}")
        return 0
    return _execute(args)


if __name__ == "__main__":
    sys.exit(main())
