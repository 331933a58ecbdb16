"""One value as YAML types it (`typed`, as OmegaConf does) or as the text it was written
as (`text`): the two readings the declared type picks from. Plain words and paths are
read without importing YAML."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from dispatcher.config.declaration import MISSING, CommandLineText

if TYPE_CHECKING:
    import yaml

YAML_FLOAT = re.compile(  # YAML 1.2 floats: `1e3` and `1_000.5` are numbers
    r"""^(?:[-+]?[0-9]+(?:_[0-9]+)*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9]+(?:_[0-9]+)*(?:[eE][-+]?[0-9]+)
    |\.[0-9]+(?:_[0-9]+)*(?:[eE][-+][0-9]+)?
    |[-+]?[0-9]+(?:_[0-9]+)*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


# The two loaders, built on first use: a command line of plain words and paths never
# imports YAML (`is_own_text`).
TYPED, TEXT = "typed", "text"


@functools.cache
def loader(kind: str) -> type[yaml.SafeLoader]:
    """`typed`: types a `--mixin` value, or a YAML file's, the way OmegaConf's YAML loader
    does. `text`: reads every plain scalar as the text it was written as (only `null`,
    `~` and an empty value stay None), so the declared type, not YAML, decides what
    `0123` is."""
    import yaml

    if kind == TYPED:
        loader = type("_MixinValueLoader", (yaml.SafeLoader,), {})
        loader.add_implicit_resolver("tag:yaml.org,2002:float", YAML_FLOAT, list("-+0123456789."))
        keep = lambda tag: tag != "tag:yaml.org,2002:timestamp"  # noqa: E731
    else:
        loader = type("_TextLoader", (yaml.SafeLoader,), {})
        keep = lambda tag: tag == "tag:yaml.org,2002:null"  # noqa: E731
    loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if keep(tag)]
        for first, resolvers in loader.yaml_implicit_resolvers.items()
    }
    return loader


_OWN_TEXT = re.compile(r"[A-Za-z_/][A-Za-z0-9_./-]*")
_KEYWORDS = frozenset(
    spelling
    for word in ("yes", "no", "true", "false", "on", "off", "null")
    for spelling in (word, word.capitalize(), word.upper())
)
"""Plain scalars YAML reads as text under either loader: no indicator, space, `:` or `#`,
a first character that starts no number, date or `~`, and not one of the words of
YAML 1.1's booleans and null. Paths and words, read without importing YAML."""


def is_own_text(text: str) -> bool:
    """Whether YAML reads `text` as itself under either loader (decided without YAML)."""
    return _OWN_TEXT.fullmatch(text) is not None and text not in _KEYWORDS


def load_value(text: str, kind: str) -> Any:
    """One `--mixin` value, as the loader `kind` types it (an empty value is None)."""
    if is_own_text(text):
        return text
    if not text.strip():
        return None
    import yaml

    try:
        value = yaml.load(text, Loader=loader(kind))
    except yaml.YAMLError as exc:
        raise ValueError(getattr(exc, "problem", None) or str(exc).splitlines()[0]) from None
    if not is_plain_data(value):
        raise ValueError(f"YAML reads it as {type(value).__name__}, which no placeholder takes")
    return value


def is_plain_data(value: Any) -> bool:
    """Whether `value` is what a placeholder can take: text, numbers, booleans, None, and
    lists and mappings of them."""
    if isinstance(value, dict):
        return all(isinstance(k, (str, int, float)) and is_plain_data(v) for k, v in value.items())
    if isinstance(value, list):
        return all(is_plain_data(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def typed_value(text: str) -> tuple[Any, str | None]:
    """A `--mixin` value as YAML types it, for any placeholder but a `str`; where YAML
    cannot read it, the text itself and why (a `str` takes it, anything else refuses it)."""
    try:
        return load_value(text, TYPED), None
    except ValueError as exc:
        return text, str(exc)


def command_line_text(text: str, value: Any, problem: str | None) -> CommandLineText | None:
    """What the text tree holds for one `--mixin` value: the text as typed, with the source
    text of each scalar when YAML reads it as a list or mapping. An empty value is no value
    (None): an unset shell variable in `output=$OUT` is refused, not the working directory."""
    if text == "":
        return None
    elements: Any = MISSING
    if isinstance(value, (list, dict)):
        try:
            elements = load_value(text, TEXT)
        except ValueError:
            elements = MISSING
    return CommandLineText(text, elements, problem)
