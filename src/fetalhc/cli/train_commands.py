"""`fetalhc strategies` and `fetalhc train` (its flags generated from TrainConfig)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from fetalhc.cli.types import finite_float, nonnegative_int
from fetalhc.errors import FetalHCError
from fetalhc.io.files import ensure_folder


def cmd_strategies(args: argparse.Namespace) -> int:
    from fetalhc.model.freeze import strategy_table

    rows = strategy_table(args.encoder)
    print(f"{'strategy':<16}{'trainable layers':<38}{'trainable':>12}{'total':>12}{'% of 31M':>10}")
    for r in rows:
        print(
            f"{r['strategy']:<16}{r['trainable_layers']:<38}{r['trainable_params']:>12,}"
            f"{r['total_params']:>12,}{r['pct_of_scratch_unet']:>9.2f}%"
        )
    return 0


def train_config(args: argparse.Namespace):
    """The run's TrainConfig: defaults < --config YAML < the flags given."""
    from fetalhc.training.config import config_from_mapping, read_config_file

    mapping = read_config_file(args.config) if args.config else {}
    mapping.update(getattr(args, "recipe", {}))
    for key in ("data", "split"):
        if not mapping.get(key):
            raise FetalHCError(f"give --{key} (or '{key}:' in --config)")
    return config_from_mapping(mapping)


def cmd_train(args: argparse.Namespace) -> int:
    from fetalhc.training.trainer import Trainer

    config = train_config(args)
    ensure_folder(args.out)
    summary = Trainer(config, args.out, resume=args.resume).run()
    print(f"{args.out}: best val Dice {summary['best_val_dice']}, {summary['train_seconds']:.0f} s")
    return 0


class _Recipe(argparse.Action):
    """Collects the TrainConfig keys given on the command line in `args.recipe`, so a flag
    overrides --config and an absent flag leaves the YAML's (or the default) value."""

    def __call__(self, parser, namespace, values, option_string=None):
        recipe = dict(getattr(namespace, "recipe", None) or {})
        recipe[self.dest] = self.const if self.nargs == 0 else values
        namespace.recipe = recipe


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    """`fetalhc train`'s options, generated from TrainConfig's fields (flag = key)."""
    import typing
    from dataclasses import fields

    from fetalhc.training.config import TrainConfig, defaults, format_size

    hints = typing.get_type_hints(TrainConfig)
    d = defaults()
    p.set_defaults(recipe={})
    p.add_argument("--config", type=Path, help="YAML of TrainConfig keys; flags override it")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    for f in fields(TrainConfig):
        flags = [f"--{f.name.replace('_', '-')}", *f.metadata.get("aliases", ())]
        shown = format_size(d[f.name]) if f.name == "image_size" else d[f.name]
        if isinstance(shown, list):
            shown = ",".join(map(str, shown))
        help_text = (
            f"{f.metadata['help']} (default: {shown!s})" if shown != "" else f.metadata["help"]
        )
        kind = hints[f.name]
        metavar = f.name.upper()
        options: dict = {"dest": f.name, "action": _Recipe, "help": help_text, "metavar": metavar}
        if kind is bool:
            options.update(nargs=0, const=True, metavar=None)
            p.add_argument(*flags, **options)
            p.add_argument(
                f"--no-{f.name.replace('_', '-')}",
                dest=f.name,
                action=_Recipe,
                nargs=0,
                const=False,
                help=argparse.SUPPRESS,
            )
            continue
        if kind is int:
            options["type"] = int
        elif kind is float:
            options["type"] = finite_float
        if f.metadata.get("choices"):
            options.update(choices=f.metadata["choices"], metavar=None)
        p.add_argument(*flags, **options)
    p.add_argument("--threads", type=nonnegative_int, default=0, help="CPU threads (0: default)")
    p.add_argument("--resume", action="store_true", help="continue from the last epoch")


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("strategies", cmd_strategies, "list the fine-tuning strategies and their sizes")
    p.add_argument("--encoder", default="mobilenet_v2")

    p = add("train", cmd_train, "train a model with a fine-tuning strategy")
    _add_train_arguments(p)
