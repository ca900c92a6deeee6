"""Turning rephrase detection on, without importing it (or numpy) when it is off."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from opentelemetry.instrumentation.conversation import environment_variables as env

if TYPE_CHECKING:
    from opentelemetry.instrumentation.conversation.rephrase import RephraseDetector

_logger = logging.getLogger(__name__)

__all__ = ["build_rephrase_detector"]


def build_rephrase_detector(enabled: bool | None) -> RephraseDetector | None:
    """The default detector when ``enabled`` (``None``: the environment variable) and its
    dependencies are installed; ``None`` otherwise, with one warning saying why."""
    if enabled is None:
        enabled = env.env_flag(env.CONVERSATION_ANALYTICS_DETECT_REPHRASES, False)
    if not enabled:
        return None
    try:
        from opentelemetry.instrumentation.conversation.rephrase import RephraseDetector
    except ImportError as exc:
        _logger.warning(
            "rephrase detection is off: %s (pip install "
            "'opentelemetry-instrumentation-conversation[rephrase]')",
            exc,
        )
        return None
    return RephraseDetector()
