"""Plumbing shared by the ``inrforge`` command line and the scripts in ``pipelines/``.

- :func:`set_threads`: torch's intra-op threads, set deliberately (default: the cores this
  process may run on; oversubscribed threads make CPU fitting many times slower);
- :func:`pyplot`: matplotlib's pyplot on the headless Agg backend;
- :func:`run_script`: run a script's ``main()`` as a program: a user error (an
  :class:`InrforgeError`) is printed as one line on stderr with exit status 1, never a traceback;
  Ctrl-C says what a re-run keeps (:func:`report_errors`);
- :class:`ArgumentParser`: argparse whose argument errors are one line (no usage dump), status 2;
- argument types that refuse impossible values while parsing, before any work starts:
  :func:`positive_int`, :func:`nonnegative_int`, :func:`int_at_least` (a factory),
  :func:`positive_ints` (a sorted comma list), :func:`layer_widths` (an ordered comma list),
  :func:`names_from` (a factory: a comma list of known names), :func:`positive_float`,
  :func:`nonnegative_float`, :func:`fraction`, :func:`probability`, :func:`psnr_or_none`,
  :func:`image_size` (``HxW``);
- :func:`add_fit_arguments` (with :func:`check_fit_arguments` and :func:`fit_arch`): the options
  of a fit, shared by ``inrforge fit`` and ``pipelines/dask_fit.py``;
- :func:`parse_with_small`: a pipeline's ``--small`` changes only the defaults; values given
  explicitly win;
- :func:`refuse_unused` / :func:`refuse_given` / :func:`refuse_options`: options given explicitly
  that another choice makes meaningless (the fit's options with ``--store``, ``--w0`` with a ReLU
  arch) are an argument error, not silently ignored;
- :func:`require_splits` (and :func:`require_fit_splits`, before a fit): splits too small for an
  experiment are refused before it starts;
- :func:`results_dir`: a pipeline's ``--out`` folder, refusing to replace an earlier run's results
  (:func:`add_results_arguments` declares its options); :func:`write_results` ends a run:
  its ``results.json``, then no training logs but its own; :func:`store_location` and
  :func:`psnr_fields` are how a results file names its store and its fit quality.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Callable, NoReturn

from .checks import process_count, usable_cores
from .errors import InrforgeError
from .run_folder import LOG_FILES as TRAIN_LOG_FILES


class ArgumentParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose argument errors are one line on stderr,
    ``PROG: error: MESSAGE (see PROG --help)``, with exit status 2 (argparse's convention),
    instead of the full usage text followed by the message. Subcommand parsers inherit it."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpWithDefaults)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        """argparse's, but arguments that no option takes are blamed on the subcommand whose options
        were parsed (``inrforge fit: error: ... (see inrforge fit --help)``), not on the top level."""
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            parser = self
            for action in self._actions:
                if isinstance(action, argparse._SubParsersAction) and getattr(parsed, action.dest, None) in action.choices:
                    parser = action.choices[getattr(parsed, action.dest)]
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed


class _HelpWithDefaults(argparse.HelpFormatter):
    """``--help`` shows each option's default (where it has one worth showing), also for an option
    declared without a help text (in an argument group too), which argparse would list bare."""

    def _format_action(self, action):
        if action.help is None and action.option_strings and _worth_showing(action.default):
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.option_strings and _worth_showing(action.default)
                and "%(default)" not in text and "default" not in text):
            text += " (default: %(default)s)"
        return text


class HelpAsWritten(argparse.RawDescriptionHelpFormatter, _HelpWithDefaults):
    """``--help`` with the description as written (a script's docstring keeps its layout) and
    each option's default, as :class:`ArgumentParser`'s own formatter shows them."""


def _worth_showing(default) -> bool:
    """Whether ``--help`` should state this default (not for unset, off, or empty ones)."""
    return not (default is None or default is False or default is argparse.SUPPRESS
                or (isinstance(default, (list, tuple, str)) and len(default) == 0))


def _number(text: str, kind: type, ok: Callable[[float], bool], expected: str):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer > 0 (counts: epochs, steps, sizes, threads, ...)."""
    return _number(text, int, lambda v: v > 0, "a positive integer")


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (an index, a number of worker processes)."""
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, temperatures, w0)."""
    return _number(text, float, lambda v: v > 0, "a positive number")


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (noise levels, angles, weight decay)."""
    return _number(text, float, lambda v: v >= 0, "a number >= 0")


def fraction(text: str) -> float:
    """A number strictly between 0 and 1 (a split's share of the data)."""
    return _number(text, float, lambda v: 0 < v < 1, "a number between 0 and 1")


def probability(text: str) -> float:
    """A number in [0, 1]."""
    return _number(text, float, lambda v: 0 <= v <= 1, "a probability in [0, 1]")


def dropout_rate(text: str) -> float:
    """A number in [0, 1): a dropout probability (1 would drop everything)."""
    return _number(text, float, lambda v: 0 <= v < 1, "a dropout probability in [0, 1)")


def path_arg(text: str) -> str:
    """A file, folder or store path (or URL) as given; an empty one is refused (``""`` would mean
    the current folder to some calls and the filesystem root to others)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def store_out_arg(text: str) -> str:
    """A :func:`path_arg` for a store that a command writes: not ``memory://``, which would be gone
    when the command exits."""
    if path_arg(text).startswith("memory://"):
        raise argparse.ArgumentTypeError("a memory:// store is gone when this command exits; give a folder or "
                                         "a persistent URL")
    return text


def psnr_or_none(text: str) -> float | None:
    """A PSNR in dB, or ``none`` / ``off`` / ``inf`` for no early stop."""
    if text.lower() in ("none", "off", "inf"):
        return None
    return _number(text, float, lambda v: True, "a PSNR in dB or 'none'")


def positive_ints(text: str) -> tuple[int, ...]:
    """A comma list of integers > 0 such as ``1,2,5,10``: sorted, without repeats."""
    try:
        values = {int(t) for t in text.split(",") if t.strip()}
    except ValueError:
        values = set()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected a comma list of positive integers, got {text!r}")
    return tuple(sorted(values))


def int_at_least(lo: int) -> Callable[[str], int]:
    """An argument type: an integer >= ``lo`` (e.g. ``int_at_least(2)`` for a contrastive batch)."""

    def parse(text: str) -> int:
        return _number(text, int, lambda v: v >= lo, f"an integer >= {lo}")

    parse.__name__ = f"int_at_least_{lo}"
    return parse


def layer_widths(text: str) -> tuple[int, ...]:
    """A comma list of integers > 0 such as ``512,256``, in the given order, repeats kept (the
    hidden widths of a network); at least one."""
    try:
        values = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected a comma list of positive layer widths, got {text!r}")
    return values


def image_size(text: str) -> tuple[int, int]:
    """An image size ``HxW`` such as ``28x28`` (``X`` too): two integers > 0, as ``(height, width)``."""
    parts = text.lower().split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW with two positive integers, such as 28x28, got {text!r}")
    return size


def names_from(choices, what: str = "names") -> Callable[[str], tuple[str, ...]]:
    """An argument type: a comma list of ``choices`` such as ``dwsnet,mlp``, returned as a tuple in
    the given order without repeats.  An empty list, or a name not in ``choices``, is refused with
    the choices listed.  A string default goes through it too (argparse converts string defaults)."""
    choices = tuple(choices)

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
        unknown = [n for n in names if n not in choices]
        if not names or unknown:
            why = f" (unknown: {', '.join(unknown)})" if unknown else ""
            raise argparse.ArgumentTypeError(f"expected a comma list of {what} from {', '.join(choices)}, "
                                             f"got {text!r}{why}")
        return names

    parse.__name__ = what
    return parse


def parse_with_small(parser: argparse.ArgumentParser, argv, small: dict) -> argparse.Namespace:
    """Parse ``argv`` with ``parser``, whose ``--small`` flag (``dest="small"``) selects the
    defaults ``small`` (dest -> value, already converted) instead of the parser's own.  Only the
    defaults change: a value given on the command line wins, ``--small`` or not."""
    a = parser.parse_args(argv)
    if a.small:
        parser.set_defaults(**small)
        a = parser.parse_args(argv)
    return a


def given_options(parser: argparse.ArgumentParser, argv) -> set[str]:
    """The destinations of the options given explicitly in ``argv`` (in any spelling argparse
    accepts: ``--opt=V``, an unambiguous prefix), whatever their values; not those left at a default."""
    # one marker per option; a list for the options that append to their value (--source-opt), which
    # argparse copies before appending (a given one is then another object, as any value given is)
    start = {act.dest: _Unset() if isinstance(act, (argparse._AppendAction, argparse._AppendConstAction,
                                                    argparse._ExtendAction)) else object()
             for act in parser._actions if act.dest != argparse.SUPPRESS}
    parsed = parser.parse_args(argv, argparse.Namespace(**start))
    return {dest for dest, value in vars(parsed).items() if value is not start[dest]}


class _Unset(list):
    """:func:`given_options`' marker of an appending option left at its default."""


def refuse_unused(parser: argparse.ArgumentParser, argv, a: argparse.Namespace, when: str, unused, why: str) -> None:
    """An argument error (one line, status 2) when option ``when`` (e.g. ``--store``) is set in ``a``
    and one of the options ``unused`` (option strings), which it makes meaningless, was given
    explicitly in ``argv``: such an option would otherwise be accepted and ignored."""
    if getattr(a, parser._option_string_actions[when].dest) in (None, False):
        return
    refuse_given(parser, argv, unused, f"not used with {when} ({why})")


def refuse_given(parser: argparse.ArgumentParser, argv, options, why: str) -> None:
    """An argument error ``argument OPTION: WHY`` (one line, status 2) for the first of ``options``
    (option strings) given explicitly in ``argv``: the caller knows they would be ignored."""
    given = given_options(parser, argv)
    for option in options:
        if parser._option_string_actions[option].dest in given:
            parser.error(f"argument {option}: {why}")


def refuse_options(parser: argparse.ArgumentParser, a: argparse.Namespace, names, owner: str, user: str) -> None:
    """An argument error (one line, status 2) naming each option of ``names`` (destinations) set in
    ``a`` (its value is not None: these options default to None) when ``user`` (the chosen model or
    arch, e.g. ``--arch relu``) has no use for it: an option accepted and then ignored would mislead."""
    given = [f"--{name.replace('_', '-')}" for name in names if getattr(a, name) is not None]
    if given:
        one = len(given) == 1
        parser.error(f"argument {', '.join(given)}: {'' if one else 'all '}{owner} option{'' if one else 's'}; "
                     f"{user} does not use {'it' if one else 'them'}")


def add_fit_arguments(parser: argparse.ArgumentParser, out_help: str, data_help: str) -> None:
    """The options of a fit, shared by ``inrforge fit`` and ``pipelines/dask_fit.py``: what to fit
    (``--source --data --source-opt --limit``), where (``--out``), the INR (``--arch --hidden --depth
    --w0 --fourier-*``), the fitting settings (``--views --steps --lr --lr-schedule --first-layer-lr
    --target-psnr --batch-size --shard-size --seed --no-compile``) and what may happen to an existing
    store (``--overwrite --repair --allow-version-change``); their defaults are
    :class:`~inrforge.fitjob.FitRequest`'s.  :func:`fit_arch` reads the INR options back."""
    from .arch import PRESETS
    from .fit import KERNELS, LR_SCHEDULES
    from .fitjob import FitRequest
    from .sources import SOURCE_NAMES

    parser.add_argument("--source", required=True, choices=SOURCE_NAMES, help="what to fit")
    parser.add_argument("--data", type=path_arg, help=data_help)
    parser.add_argument("--source-opt", action="append", default=[], metavar="KEY=VALUE",
                        help="source option, e.g. n=5000 or b_range=0.5,10 for sines (repeatable)")
    parser.add_argument("--limit", type=positive_int, help="fit only the first N objects")
    parser.add_argument("--out", type=store_out_arg, required=True, help=out_help)
    parser.add_argument("--arch", default="siren-dwsnets", choices=PRESETS, help="INR preset")
    parser.add_argument("--hidden", type=positive_int, default=32, help="hidden width")
    parser.add_argument("--depth", type=positive_int, default=2, help="number of hidden layers (2 gives 2->32->32->1)")
    # None: not given (an option the chosen arch does not use is refused, not ignored)
    parser.add_argument("--w0", type=positive_float, help="SIREN frequency w0 (default 30; siren archs only)")
    parser.add_argument("--fourier-features", type=positive_int, help="relu-fourier: number of frequencies (default 32)")
    parser.add_argument("--fourier-sigma", type=positive_float, help="relu-fourier: std of the frequencies (default 3.0)")
    parser.add_argument("--views", type=positive_int, default=FitRequest.views, help="INRs (random inits) per object")
    parser.add_argument("--steps", type=positive_int, default=FitRequest.steps, help="Adam steps per INR")
    parser.add_argument("--lr", type=positive_float, default=FitRequest.lr, help="Adam learning rate")
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=FitRequest.lr_schedule,
                        help="constant, or cosine: lr (1 + cos(pi t / steps)) / 2 at step t")
    parser.add_argument("--first-layer-lr", type=positive_float, default=FitRequest.first_layer_lr, metavar="FACTOR",
                        help="the first layer's learning rate is --lr times this; --lr 5e-3 --lr-schedule cosine "
                             "--first-layer-lr 10 fits images to higher PSNRs in fewer steps, but weight-space "
                             "models learn less from such INRs (docs/benchmarks.md)")
    parser.add_argument("--shared-init", action="store_true",
                        help="start view v of every object from the same init (object 0's) instead of its own: "
                             "a weight-space model may learn more from such INRs (docs/benchmarks.md)")
    parser.add_argument("--target-psnr", type=psnr_or_none, default=FitRequest.target_psnr,
                        help="early stop per INR (dB), or 'none'")
    parser.add_argument("--batch-size", type=positive_int,
                        help="INRs fitted at once (default: the store's recorded one when resuming, else ~25,000 "
                             "INR-points per step on a CPU, 8,192 on a GPU)")
    parser.add_argument("--shard-size", type=positive_int,
                        help="objects per shard (the unit of writing and resuming; on Dask, one task each; default: "
                             "the store's when resuming, else 256, or on a GPU at least one batch)")
    parser.add_argument("--seed", type=nonnegative_int, default=FitRequest.seed,
                        help="global seed: view v of object i starts from a seed derived from (seed, i, v); "
                             "it also draws the train/val/test split")
    parser.add_argument("--no-compile", action="store_true",
                        help="fit with the eager PyTorch step instead of a compiled one")
    parser.add_argument("--kernel", choices=KERNELS,
                        help="the compiled step on a CPU: native (inrforge's fused C++ kernel, built once per "
                             "machine) or inductor (torch.compile's, as stores fitted before 0.5.0); default: the "
                             "store's when resuming, else native (on a GPU: inductor)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing store made with other arguments")
    parser.add_argument("--repair", action="store_true",
                        help="read the store being resumed whole and refit the finished shards that cannot be read "
                             "back (missing or damaged files); see inrforge info --verify")
    parser.add_argument("--allow-version-change", action="store_true",
                        help="resume a store begun with another inrforge or torch version (its shards then mix the "
                             "two, recorded in fit.resumed_with); refused otherwise")


def check_fit_arguments(parser: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """An argument error for an INR option of :func:`add_fit_arguments` that ``a.arch`` does not use."""
    if not a.arch.startswith("siren"):
        refuse_options(parser, a, ["w0"], "SIREN", f"--arch {a.arch}")
    if a.arch != "relu-fourier":
        refuse_options(parser, a, ["fourier_features", "fourier_sigma"], "relu-fourier", f"--arch {a.arch}")


def check_failures(info: dict, prog: str) -> int:
    """After a fit (``info``: the store's :meth:`~inrforge.store.INRStore.info`): 0, with a warning
    line on stderr when some INRs failed; an :class:`InrforgeError` when every one did."""
    failed, inrs = info["failed"], info["objects"] * info["views"]
    if not failed:
        return 0
    why = ("their loss became NaN or inf, and the store marks them so that nothing trains on them; a lower --lr "
           "may help (with --overwrite, or another --out: a store is not resumed with other arguments)")
    if failed == inrs:
        raise InrforgeError(f"every INR failed ({why})")
    print(f"{prog}: warning: {failed:,} of the {inrs:,} INRs failed: {why}", file=sys.stderr)
    return 0


def fit_options(a: argparse.Namespace, source) -> dict:
    """The keyword arguments of ``fit_inrs`` / ``fit_inrs_distributed`` that the options of
    :func:`add_fit_arguments` in ``a`` give (the device and threads are the caller's)."""
    return dict(arch=fit_arch(a, source), views=a.views, steps=a.steps, lr=a.lr, lr_schedule=a.lr_schedule,
                first_layer_lr=a.first_layer_lr, shared_init=a.shared_init, target_psnr=a.target_psnr, batch_size=a.batch_size, seed=a.seed,
                compile=not a.no_compile, kernel=a.kernel, shard_objects=a.shard_size, overwrite=a.overwrite, repair=a.repair,
                allow_version_change=a.allow_version_change)


def fit_arch(a: argparse.Namespace, source):
    """The :class:`~inrforge.arch.INRSpec` the options of :func:`add_fit_arguments` in ``a`` describe,
    for ``source``'s inputs and outputs (unset options take the presets' defaults)."""
    from .arch import make_arch

    options = {"w0": a.w0, "fourier_features": a.fourier_features, "fourier_sigma": a.fourier_sigma}
    return make_arch(a.arch, in_features=source.in_features, out_features=source.out_features, hidden=a.hidden,
                     depth=a.depth, **{k: v for k, v in options.items() if v is not None})


def require_splits(sizes: dict, needed: dict, of: str, who: str, hint: str = "", planned: bool = False) -> None:
    """An :class:`InrforgeError` unless each split named in ``needed`` holds at least that many INRs
    (``sizes``: split -> count, e.g. a store's ``info()["splits"]``; ``of``: whose splits they are;
    ``planned``: the splits of INRs still to be fitted)."""
    for split, least in needed.items():
        n = int(sizes.get(split, 0))
        if n < least:
            raise InrforgeError(f"the {split} split of {of} {'would hold' if planned else 'holds'} {n} INR(s); "
                                f"{who} needs at least {least}" + (f" ({hint})" if hint else ""))


def require_fit_splits(store, source, seed: int, test_fraction: float, needed: dict, who: str,
                       hint: str = "fit more objects (--limit) or a larger --test-fraction") -> None:
    """:func:`require_splits` for a pipeline's INRs before anything is fitted: the usable splits of
    ``store`` when one is given, else the splits that ``source`` would be fitted into (the
    fitter's :func:`~inrforge.fitjob.make_splits` with ``seed`` and ``test_fraction``)."""
    from .data import usable_split_sizes
    from .fitjob import make_splits

    if store is not None:
        require_splits(usable_split_sizes(store), needed, store.path, who)
        return
    splits = make_splits(source, seed, test_fraction=test_fraction)
    require_splits({k: len(v) for k, v in splits.items()}, needed, f"the {len(source)} objects of {source.name!r} to fit",
                   who, hint, planned=True)


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to ``n`` (default: :func:`~inrforge.checks.usable_cores`); returns it.
    More than 4 per core is refused, as ``--workers`` and ``local:N`` are
    (:func:`~inrforge.checks.process_count`): a typo such as ``--threads 3000`` only slows everything."""
    import torch

    n = usable_cores() if n is None else process_count(n, "--threads")
    torch.set_num_threads(n)
    return n


def psnr_fields(info: dict) -> dict:
    """A store's PSNR median and 5th percentile (``INRStore.info()``) as a results.json records them:
    null, not NaN, where nothing was recorded (imported INRs), so that strict JSON readers accept it."""
    return {k: None if math.isnan(info[k]) else info[k] for k in ("psnr_median", "psnr_p5")}


def results_versions(*extra: str) -> dict:
    """What a results.json records about the software behind its numbers: the store's library
    versions, matplotlib's and those of the modules named in ``extra``, and torch's thread count."""
    import importlib

    import matplotlib
    import torch

    from .fitjob import library_versions

    more = {name: importlib.import_module(name).__version__ for name in extra}
    return {**library_versions(), "matplotlib": matplotlib.__version__, **more,
            "torch_threads": torch.get_num_threads()}


def mean_std(cell: dict, several: bool, scale: float = 1.0, digits: int = 2) -> str:
    """A results table's cell: ``scale`` times ``cell["mean"]``, with ``± cell["std"]`` only when the
    mean is over several seeds (one seed has no spread to show)."""
    text = f"{scale * cell['mean']:.{digits}f}"
    return text + (f" ± {scale * cell['std']:.{digits}f}" if several else "")


def save_figure(fig, path) -> None:
    """Write ``fig`` as a PNG (120 dpi) and close it."""
    fig.savefig(path, dpi=120)
    pyplot().close(fig)


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (writes files, needs no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def add_results_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    """A pipeline's ``--out`` folder (``default``) and ``--overwrite``, the two inputs of
    :func:`results_dir`; a pipeline passes ``--overwrite`` on to the store it fits into ``--out``
    too (a store fitted there with other arguments is otherwise refused), and
    ``--allow-version-change`` (:func:`inrforge.fitjob.require_same_software`)."""
    parser.add_argument("--out", type=path_arg, default=default)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of an earlier run in --out, and the INRs it fitted there "
                             "if they were fitted with other arguments (or begun with other software)")
    parser.add_argument("--allow-version-change", action="store_true",
                        help="resume INRs this script fitted into --out under another inrforge or torch version "
                             "(the store records the mix); refused otherwise")


def add_resume_argument(parser: argparse.ArgumentParser) -> None:
    """``--resume`` for a pipeline whose training runs go through :func:`inrforge.experiments.train_seeds`:
    the runs an interrupted invocation finished in ``--out`` are reused, the others trained."""
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run of this script in --out with the same arguments: the "
                             "training runs it finished there are reused (each checked to be the same run), the "
                             "others trained; refused with --overwrite")


def check_resume(parser, a) -> None:
    """An argument error for ``--resume`` with ``--overwrite`` (one keeps the earlier runs, the other deletes them)."""
    if a.resume and a.overwrite:
        parser.error("--resume keeps the runs in --out, --overwrite replaces them: give one of them")


def results_dir(path, overwrite: bool = False, files=("results.json",), folders=()) -> Path:
    """Create and return a run's output folder ``path`` (a pipeline's or ``inrforge train``'s; see
    :func:`~inrforge.files.output_path` for URLs).  ``files`` are the files the run writes directly in the folder:
    without ``overwrite``, one that exists already (an earlier run's, or the user's own) is an
    :class:`InrforgeError` naming it, and nothing is replaced; with ``overwrite``, those that exist
    are deleted here, before the run starts, so that a run stopped part way never leaves an earlier
    run's results beside its own logs.  Nothing else in the folder is touched (a pipeline's INRs
    fitted there stay reusable through its ``--store`` option, and its per-model logs are
    rewritten or removed by :func:`write_results`).  A Zarr store, or a folder inside one, is never
    used as the folder; a folder that cannot be made (a file on its path, no permission) is an
    :class:`InrforgeError`, and so is anything but a folder at one of the names ``folders`` the
    run writes its logs in (found now, not after the run's work)."""
    from .files import output_path

    out = Path(output_path(path))
    if out.exists() and not out.is_dir():
        raise InrforgeError(f"--out {path} is a file, not a folder")
    if (out / "zarr.json").exists():
        raise InrforgeError(f"--out {path} is a Zarr store; write results to a folder of their own")
    blocked = [out / name for name in folders if os.path.lexists(out / name) and not (out / name).is_dir()]
    if blocked:
        raise InrforgeError(f"{blocked[0]} is not a folder, but this run writes its logs there; move it or choose "
                            f"another --out")
    earlier = [out / name for name in files if os.path.lexists(out / name)]
    if earlier and not overwrite:
        raise InrforgeError(f"--out {path} already holds {', '.join(p.name for p in earlier)} (an earlier run's "
                            f"results?), which this run would replace; choose another --out, or pass --overwrite")
    earlier_dirs = [p for p in earlier if p.is_dir() and not p.is_symlink()]
    if earlier_dirs:
        raise InrforgeError(f"{earlier_dirs[0]} is a folder; --overwrite replaces only the files a run writes")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InrforgeError(f"cannot create --out {path}: {e.strerror or e}") from None
    for p in earlier:
        try:
            p.unlink()
        except OSError as e:
            raise InrforgeError(f"cannot replace {p}: {e.strerror or e}") from None
    return out


# The files a training run leaves in its log folder (inrforge.run_folder's), and history.json, the loss
# curve of ssl_sines' encoders before their folders were run folders (0.8.0).
LOG_FILES = frozenset({*TRAIN_LOG_FILES, "history.json"})


def write_results(out: Path, doc: dict, started: float, log_roots) -> None:
    """End a pipeline's run in ``out``: write ``out/results.json`` (whole or not at all: it marks
    the run finished), then remove the training logs of earlier runs that this run did not
    replace, inside the folders ``out/ROOT`` the pipeline writes its logs in (``log_roots``: every
    name it may use, e.g. all its model names; :func:`remove_stale_logs`), so that those logs are
    the ones of its results.  Nothing else under ``out`` is looked at."""
    from .files import write_json

    write_json(out / "results.json", doc)
    remove_stale_logs(out, started, log_roots)


def remove_stale_logs(out: Path, started: float, log_roots) -> list[Path]:
    """Remove each log folder below ``out/ROOT`` (``ROOT`` in ``log_roots``, the folders a pipeline
    writes its training logs in) that an earlier run wrote: a folder without subfolders whose
    files are all :data:`LOG_FILES` last written before ``started`` (more than 2 s before, as some
    file systems keep times to the second or two: the cells of an earlier run, e.g. a model that a
    re-run with ``--overwrite`` no longer trains, or that an interrupted run had reached).  Folders
    that became empty go too, up to ``out/ROOT`` itself.  Nothing outside those roots is looked at
    (a user's folders, another run kept inside ``out``); inside them, Zarr stores, links and any
    folder holding another file are kept whole.  Returns the folders removed."""
    out = Path(out)
    removed = []
    for name in log_roots:
        top = out / name
        if top.is_symlink() or not top.is_dir():
            continue
        for root, dirs, files in os.walk(top):
            here = Path(root)
            if "zarr.json" in files:  # a store: never looked into
                dirs[:] = []
                continue
            if dirs or not files or not set(files) <= LOG_FILES or any((here / f).is_symlink() for f in files):
                continue
            if all((here / f).stat().st_mtime < started - 2 for f in files):  # 2 s: times kept to the second
                for f in files:
                    (here / f).unlink()
                removed.append(here)
    for folder in removed:  # then the parents they leave empty, up to (not including) out
        while folder != out and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    return removed


# What a pipeline keeps: the INRs (or classifiers) its fit, which resumes, wrote into --out; its training restarts.
PIPELINE_RESUMES = ("re-run the same command plus --resume to reuse the INRs it fitted into --out and the training "
                    "runs it finished there")


def report_errors(prog: str, main: Callable[[], int], resumes: str | None = None) -> int:
    """``main()``'s exit status; a user error becomes one line ``PROG: error: ...`` and status 1,
    Ctrl-C the line ``PROG: interrupted`` and status 130 (the line adds ``(resumes)``, what a
    re-run keeps, only where the caller says so: e.g. :data:`~inrforge.errors.RESUMES` for ``inrforge fit``, whose
    re-run resumes; no other command claims it); a reader that stopped reading
    (``inrforge info STORE | head``) ends the output quietly, with status 141 (128 + SIGPIPE).
    Warnings are one line too: ``PROG: warning: ...``."""
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, category, *_, **__: print(f"{prog}: warning: {message}",
                                                                         file=sys.stderr)
        return _status(prog, main, resumes)


def _status(prog: str, main: Callable[[], int], resumes: str | None) -> int:
    real = sys.stdout
    if real is not None:  # None when the process started with its stdout closed
        sys.stdout = _GuardedOutput(real)
    try:
        status = main()
        if sys.stdout is not None:
            sys.stdout.flush()  # here, so that a closed pipe is caught below and not at exit
        return status
    except InrforgeError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted" + (f" ({resumes})" if resumes else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:
        _drop_stdout(real)
        return 141
    except _OutputFailed as e:
        _drop_stdout(real)
        print(f"{prog}: error: cannot write the output: {e.args[0].strerror or e.args[0]}", file=sys.stderr)
        return 1
    finally:
        if real is not None:
            sys.stdout = real
            try:  # what an error left buffered: a failure now, not an "Exception ignored" at exit
                real.flush()
            except (OSError, ValueError):
                _drop_stdout(real)


class _OutputFailed(Exception):
    """Writing stdout failed (a full disk, an I/O error): not an OSError, so that no library code
    that handles its own files' errors takes it for one of them."""


class _GuardedOutput:
    """``sys.stdout`` while a command runs: a failed write raises :class:`_OutputFailed` (a closed
    pipe stays a BrokenPipeError); everything else is the real stream's."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        return self._guarded(self._stream.write, text)

    def flush(self):
        return self._guarded(self._stream.flush)

    @staticmethod
    def _guarded(call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _OutputFailed(e) from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _drop_stdout(stream) -> None:
    """Point ``stream``'s file descriptor at /dev/null: no second error when the interpreter
    flushes stdout at exit."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def run_pipeline(parse_args: Callable, run: Callable, argv=None) -> int:
    """A pipeline's ``main``: parse ``argv``, set torch's threads (``--threads``), ``run`` the parsed
    arguments, exit status 0."""
    a = parse_args(argv)
    set_threads(a.threads)
    run(a)
    return 0


def run_script(prog: str, main: Callable[[], int], resumes: str | None = PIPELINE_RESUMES) -> NoReturn:
    """Exit with :func:`report_errors` (``prog``, ``main``, ``resumes``): the ``__main__`` of every
    pipeline; by default Ctrl-C says that a re-run with ``--resume`` reuses what was fitted and trained so far."""
    sys.exit(report_errors(prog, main, resumes))
