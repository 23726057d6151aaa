"""The bundle's tokenizer and chat template, without transformers (tokenizers + jinja2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tinyllm.errors import BundleError, ConfigError


class ChatTokenizer:
    """tokenizer.json plus the chat template and special tokens from tokenizer_config.json."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config_path = folder / "tokenizer_config.json"
        config: dict[str, Any] = (
            json.loads(config_path.read_text()) if config_path.is_file() else {}
        )
        template_path = folder / "chat_template.jinja"
        self.chat_template: str | None = (
            template_path.read_text() if template_path.is_file() else config.get("chat_template")
        )
        self.eos_token: str | None = _token_text(config.get("eos_token"))
        self.eos_token_id = self.tok.token_to_id(self.eos_token) if self.eos_token else None
        pad = _token_text(config.get("pad_token"))
        self.pad_token_id = (self.tok.token_to_id(pad) if pad else None) or self.eos_token_id or 0
        self._template: Any = None

    @property
    def vocab_size(self) -> int:
        """Tokens the tokenizer knows (may be fewer than the model's embedding rows)."""
        return int(self.tok.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added: templates carry their own).

        Text that is not valid Unicode (a lone surrogate, as a ``"\\ud800"`` JSON escape
        gives) is a ConfigError naming where, not the tokenizer's TypeError.
        """
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ConfigError(
                f"the text holds a lone surrogate (U+{ord(text[e.start]):04X} at character "
                f"{e.start}), which is not valid Unicode; send valid text"
            ) from e
        return list(self.tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``, special tokens removed."""
        return str(self.tok.decode(ids, skip_special_tokens=True))

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str:
        """Render a conversation and the assistant prompt with the bundle's chat template."""
        if self.chat_template is None:
            raise BundleError("the bundle's tokenizer has no chat template; pass plain prompts")
        if self._template is None:
            import jinja2

            env = jinja2.Environment(autoescape=False, keep_trailing_newline=True)
            self._template = env.from_string(self.chat_template)
        return str(
            self._template.render(
                messages=messages, add_generation_prompt=True, eos_token=self.eos_token or ""
            )
        )


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None
