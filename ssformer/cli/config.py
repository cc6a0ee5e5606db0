"""``ssformer config``: the shipped recipes, any recipe printed with every default filled in, and the
table of every key (the one in docs/training.md)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "config", help="list the shipped recipes or print one with all defaults (like mmseg's print_config)",
        description="`ssformer config list` names the shipped recipes; `ssformer config show [RECIPE] "
                    "[--set KEY=VALUE ...]` prints the resolved config as YAML: the built-in defaults, then "
                    "the recipe (a shipped name or a YAML file), then the overrides. With no RECIPE it "
                    "prints the defaults alone. Each value's type and range is checked, but nothing against the machine "
                    "(data.root may be unset). "
                    "`ssformer config keys` prints every key with its default, allowed values and meaning "
                    "as a markdown table.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="the shipped recipes")
    actions.add_parser("keys", help="every key: default, allowed values, meaning (markdown)")
    show = actions.add_parser("show", help="print a recipe with every default filled in")
    show.add_argument("recipe", nargs="?", help="shipped recipe name or YAML file (default: only the defaults)")
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config entry (repeatable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from ssformer.engine.config import config_dir, load_config, reference_table

    if args.action == "list":
        for path in sorted(config_dir().glob("*.yaml")):
            first = next((line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#")), "")
            print(f"{path.stem:40s} {first}")
        return 0
    if args.action == "keys":
        print(reference_table(), end="")
        return 0
    config = load_config(args.recipe, args.overrides, validate=False)  # values checked, the machine not
    print(yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None).rstrip())
    return 0
