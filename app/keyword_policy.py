"""The keyword policy in force, from settings and an optional keywords file."""

from __future__ import annotations

from pathlib import Path

import yaml

from app.errors import ConfigurationError
from app.rules.keywords import BUILTIN_POLICIES, ConsentAction, KeywordPolicy
from app.settings import Settings

_ACTIONS: tuple[ConsentAction, ...] = ("opt_out", "opt_in", "help")


def load_policy(settings: Settings) -> KeywordPolicy:
    """The built-in set named by STOPGUARD_KEYWORD_SET, plus custom words."""
    policy = BUILTIN_POLICIES[settings.keyword_set]
    if settings.keywords_file is None:
        return policy
    return _extend(policy, settings.keywords_file)


def _extend(policy: KeywordPolicy, path: Path) -> KeywordPolicy:
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(
            f"cannot read STOPGUARD_KEYWORDS_FILE {path}: {exc}"
        ) from exc
    unknown = set(document) - {"name", *_ACTIONS}
    if unknown or "name" not in document:
        raise ConfigurationError(
            f"{path} must hold a `name` and lists under {', '.join(_ACTIONS)}; "
            f"found {sorted(document)}"
        )
    words: dict[ConsentAction, list[str]] = {
        action: [str(word) for word in document.get(action) or []]
        for action in _ACTIONS
    }
    # The recorded policy name says which words judged each consent event, so
    # a later change of words never rewrites how history is read.
    return policy.with_words(f"{policy.name}+{document['name']}", words)
