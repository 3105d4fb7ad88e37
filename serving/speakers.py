"""Speaker names as placeholders: the model reads ``#Person1#`` where the dialogue said ``Amanda``, and its
summary gets ``Amanda`` back.

A small model trained from scratch mangles rare names ("Maxtonton", "BAfterter"): a name is a few rare
sub-word pieces it must copy one by one. DialogSum writes every speaker as ``#Person1#``, ``#Person2#``, ...
already; a model trained with SAMSum's names replaced the same way only has to copy a placeholder, and the
names go back in afterwards, exactly as the dialogue spelled them (a known technique for dialogue
summarization). A model trained so says it in its ``generation_config.json`` (``speaker_placeholders``:
``true``); every path that generates with it (the backends, the evaluation, the training's own model
selection) applies ``SpeakerNames`` to the dialogue and ``restore`` to the summary. Other models (e.g.
``facebook/bart-large-cnn``) never see a placeholder.

A speaker is what starts a line before a colon (``Amanda: ...``, ``Anna Smith: ...``); every whole-word,
case-sensitive mention of the name in the dialogue becomes the speaker's placeholder (numbered by first
appearance, as DialogSum does), and so does a multi-word name's first word when no other speaker shares it.
Speakers already written as placeholders (``#Person1#:``) are left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FLAG = "speaker_placeholders"  # the key in a model's generation_config.json
_SPEAKER = re.compile(r"^[ \t]*([^:\r\n#][^:\r\n]{0,39}?)[ \t]*:", re.M)
_PLACEHOLDER = re.compile(r"#Person(\d+)#")


@dataclass
class SpeakerNames:
    """One dialogue's speakers and their placeholders."""

    names: dict[str, str] = field(default_factory=dict)  # name (or a name's first word) -> placeholder
    placeholders: dict[str, str] = field(default_factory=dict)  # placeholder -> the full name

    @classmethod
    def of(cls, dialogue: str) -> "SpeakerNames":
        speakers: list[str] = []
        for match in _SPEAKER.finditer(dialogue):
            name = match.group(1).strip()
            if name and not name[0].isdigit() and name not in speakers:
                speakers.append(name)
        taken = {int(n) for n in _PLACEHOLDER.findall(dialogue)}  # a mixed dialogue keeps its placeholders
        found = cls()
        number = 0
        for name in speakers:
            number += 1
            while number in taken:
                number += 1
            placeholder = f"#Person{number}#"
            found.names[name] = placeholder
            found.placeholders[placeholder] = name
        first_words: dict[str, list[str]] = {}
        for name in speakers:
            if " " in name:
                first_words.setdefault(name.split()[0], []).append(name)
        for word, owners in first_words.items():
            if len(owners) == 1 and word not in found.names:
                found.names[word] = found.names[owners[0]]
        return found

    def hide(self, text: str) -> str:
        """``text`` with every speaker's name as its placeholder (the longest names first). A one-letter name
        ("A: ...", "B: ...") is replaced where it speaks only: elsewhere "A" is the article."""
        if not self.names:
            return text
        text = _SPEAKER.sub(lambda m: m.group(0).replace(m.group(1), self.names.get(m.group(1).strip(), m.group(1)), 1),
                            text)
        mentioned = sorted((n for n in self.names if len(n) > 1), key=len, reverse=True)
        if not mentioned:
            return text
        pattern = re.compile(r"(?<![\w#])(" + "|".join(re.escape(n) for n in mentioned) + r")(?![\w#])")
        return pattern.sub(lambda m: self.names[m.group(1)], text)

    def restore(self, summary: str) -> str:
        """``summary`` with each placeholder of this dialogue's speakers as the name (others left as written)."""
        if not self.placeholders:
            return summary
        return _PLACEHOLDER.sub(lambda m: self.placeholders.get(m.group(0), m.group(0)), summary)


def uses_placeholders(generation_config: dict) -> bool:
    return bool(generation_config.get(FLAG, False))
