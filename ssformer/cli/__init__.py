"""The ``ssformer`` command line: one module per sub-command, each with ``add_parser``."""

from types import ModuleType


def commands() -> list[ModuleType]:
    """The sub-command modules, in the order ``ssformer --help`` lists them."""
    from ssformer.cli import benchmark, check_data, config, convert, demo, export, info, predict, serve, train
    from ssformer.cli import eval as eval_cmd

    return [demo, train, eval_cmd, check_data, predict, export, serve, info, convert, benchmark, config]
