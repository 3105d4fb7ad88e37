"""The flow's step after the cache lookup: each dialogue's input statistics and language (serving/flow.py ``inspect``).

    tokens            the model's tokenizer, special tokens included (what the backend will count)
    over_context      more tokens than the model's context: the model reads a cut dialogue
    speakers          distinct names of "Name: ..." lines
    language          ISO 639-1 code identified by py3langid (its model ships in the wheel: no download), or
                      "und" when the text is too short or the identification not confident enough
    fragmented_words  share of the words that the tokenizer splits into FRAGMENT_PIECES or more pieces: rare,
                      misspelt or foreign words, which the model has seen little of

The statistics go into ``item.facts`` (for the steps after this one) and to an observer (the drift metrics,
observability/drift.py), and into ``item.derived`` with the method that computed them: the response cache
keeps them with its answer, and a hit (looked up before this step) brings them back, so a repeated dialogue
is neither tokenized nor identified again. They are a function of the dialogue, the model's tokenizer (the
model's identity is in the cache key) and ``Inspector.method`` (the settings and the identifier's version):
statistics made another way, or an entry without them, are computed again. Every request is still observed
and gets the language policy, hits included.

A dialogue in a language the service is not configured for (SUMMARIZER_LANGUAGES) gets a
``Notice(code="language")`` in its answer, or refuses the request with 422 unsupported_language
(SUMMARIZER_OTHER_LANGUAGES=refuse). Computed in the API process: about a millisecond per dialogue (bench in
README, "Drift and language").
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import asdict, dataclass, fields
from typing import Callable, Literal, Sequence

from serving.errors import ErrorCode
from serving.flow import Call, Item, Refusal, Step
from serving.protocol import Notice

FRAGMENT_PIECES = 3  # a word in this many tokenizer pieces or more counts as fragmented
UNDETERMINED = "und"
# The language is identified on the dialogue's first characters: enough to tell, and a 20,000-character
# meeting costs no more than a chat.
LANGUAGE_SAMPLE_CHARS = 2000
INLINE_CHARS = 4000  # a request with more characters than this is inspected in a worker thread
STATISTICS = "input_statistics"  # the key in Item.facts (an InputStatistics) and Item.derived (its JSON form)
# "Name: text" at a line's start; the colon followed by a space or the line's end ("10:30" is no speaker).
SPEAKER = re.compile(r"^[ \t]*([^:\n]{1,40}?)[ \t]*:(?=[ \t]|$)", re.MULTILINE)

# Names for the warning's message; any other code is shown as it is.
LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
                  "pt": "Portuguese", "nl": "Dutch", "ru": "Russian", "pl": "Polish", "tr": "Turkish",
                  "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "ar": "Arabic", "hi": "Hindi",
                  "sv": "Swedish", "da": "Danish", "no": "Norwegian", "fi": "Finnish", "cs": "Czech",
                  "uk": "Ukrainian", "el": "Greek", "he": "Hebrew", "id": "Indonesian", "vi": "Vietnamese"}


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, code)


@dataclass(frozen=True)
class InputStatistics:
    tokens: int
    over_context: bool
    speakers: int
    language: str
    language_confidence: float
    fragmented_words: float

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: object) -> InputStatistics | None:
        """The statistics ``as_dict`` gave, or None for anything else (another version's, a damaged entry)."""
        if not isinstance(values, dict) or values.keys() != _STATISTICS_TYPES.keys():
            return None
        for name, kind in _STATISTICS_TYPES.items():
            value = values[name]
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                return None
        return cls(**values)


_STATISTICS_TYPES = {f.name: {"int": int, "bool": bool, "str": str, "float": (int, float)}[f.type]
                     for f in fields(InputStatistics)}


class LanguageIdentifier:
    """py3langid's naive Bayes model (97 languages, 4.6 MB, in the wheel), probabilities normalised.

    Speaker names are removed first (a name says nothing of the language and "#Person1#" less). A text with
    fewer than ``min_letters`` letters, or whose best language is below ``min_confidence``, is "und": a short
    "A: ok\\nB: thx" must not be called Slovak."""

    def __init__(self, min_confidence: float = 0.9, min_letters: int = 20) -> None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier as Model

        self._model = Model.from_model_file(MODEL_FILE, norm_probs=True)  # ~1 s: once per process
        self._lock = threading.Lock()  # the model keeps no state per call, but is not documented thread-safe
        self.min_confidence, self.min_letters = min_confidence, min_letters
        self.method = f"py3langid={_version('py3langid')};confidence={min_confidence};letters={min_letters}"

    def identify(self, dialogue: str) -> tuple[str, float]:
        text = SPEAKER.sub("", dialogue[:LANGUAGE_SAMPLE_CHARS])
        if sum(1 for c in text if c.isalpha()) < self.min_letters:
            return UNDETERMINED, 0.0
        with self._lock:
            code, confidence = self._model.classify(text)
        confidence = float(confidence)
        return (str(code), confidence) if confidence >= self.min_confidence else (UNDETERMINED, confidence)


class Inspector:
    """The statistics of one dialogue: the model's tokenizer (``serving.tokenization.ModelTokenizer``), its
    context length and a language identifier."""

    def __init__(self, tokenizer, context_tokens: int, languages: LanguageIdentifier) -> None:
        self.tokenizer, self.context_tokens, self.languages = tokenizer, context_tokens, languages
        # Everything besides the dialogue and the tokenizer that the statistics depend on: stored with them.
        self.method = (f"pieces={FRAGMENT_PIECES};context={context_tokens};sample={LANGUAGE_SAMPLE_CHARS};"
                       f"{languages.method}")

    def statistics(self, dialogue: str) -> InputStatistics:
        try:
            tokens, words, fragmented = self.tokenizer.fragmentation(dialogue, FRAGMENT_PIECES)
        except (TypeError, UnicodeEncodeError):  # a lone surrogate ("\ud800" in the JSON): neither library takes it
            dialogue = dialogue.encode("utf-8", "replace").decode("utf-8")
            tokens, words, fragmented = self.tokenizer.fragmentation(dialogue, FRAGMENT_PIECES)
        language, confidence = self.languages.identify(dialogue)
        speakers = {m.group(1).strip().casefold() for m in SPEAKER.finditer(dialogue)}
        fragmented = fragmented / words if words else 0.0
        return InputStatistics(tokens=tokens, over_context=tokens > self.context_tokens, speakers=len(speakers),
                               language=language, language_confidence=round(confidence, 4),
                               fragmented_words=fragmented)


@dataclass(frozen=True)
class LanguagePolicy:
    """SUMMARIZER_LANGUAGES and SUMMARIZER_OTHER_LANGUAGES: what a dialogue in another language gets."""

    languages: frozenset[str] = frozenset({"en"})
    other: Literal["warn", "refuse", "ignore"] = "warn"

    def accepts(self, language: str) -> bool:
        return self.other == "ignore" or language == UNDETERMINED or language in self.languages

    def expected(self) -> str:
        return ", ".join(f"{language_name(c)} ({c})" for c in sorted(self.languages))


class InputInspection(Step):
    """Statistics into ``item.facts`` and to ``observe``; the language policy as warnings or a refusal."""

    def __init__(self, inspector: Inspector, policy: LanguagePolicy,
                 observe: Callable[[InputStatistics], None] | None = None) -> None:
        self.inspector, self.policy, self.observe = inspector, policy, observe

    @classmethod
    def configured(cls, config, tokenizer, context_tokens: int,
                   observe: Callable[[InputStatistics], None] | None = None) -> InputInspection:
        """From a ``ServingConfig`` (SUMMARIZER_LANGUAGES, SUMMARIZER_OTHER_LANGUAGES, SUMMARIZER_LANGUAGE_*)."""
        identifier = LanguageIdentifier(config.language_min_confidence, config.language_min_letters)
        return cls(Inspector(tokenizer, context_tokens, identifier),
                   LanguagePolicy(frozenset(config.languages), config.other_languages), observe)

    async def before(self, items: Sequence[Item], call: Call) -> None:
        refused: list[tuple[int, InputStatistics]] = []
        known = [self._known(item) for item in items]
        dialogues = [item.dialogue for item, stats in zip(items, known) if stats is None]
        if sum(len(d) for d in dialogues) > INLINE_CHARS:  # a long meeting costs ~25 ms: off the event loop
            computed = iter(await asyncio.to_thread(lambda: [self.inspector.statistics(d) for d in dialogues]))
        else:  # a chat costs ~1 ms, less than the hop to a thread and back under load
            computed = iter([self.inspector.statistics(d) for d in dialogues])
        for index, (item, stats) in enumerate(zip(items, known)):
            if stats is None:
                stats = next(computed)
                item.derived[STATISTICS] = {"method": self.inspector.method, **stats.as_dict()}
            item.facts[STATISTICS] = stats
            item.facts["input_tokens"] = stats.tokens
            item.facts["language"] = stats.language
            if self.observe is not None:
                self.observe(stats)  # refused dialogues and cache hits too: drift is about what clients send
            if self.policy.accepts(stats.language):
                continue
            if self.policy.other == "refuse":
                refused.append((index, stats))
            else:
                item.warnings.append(Notice(code="language", message=self._warning(stats)))
        if refused:
            index, stats = refused[0]
            field = "dialogue" if call.route == "/summarize" else f"dialogues[{index}]"
            more = f" ({len(refused)} of the {len(items)} dialogues)" if len(items) > 1 else ""
            raise Refusal(422, ErrorCode.UNSUPPORTED_LANGUAGE,
                          f"{field} looks like {language_name(stats.language)} ({stats.language}, confidence "
                          f"{stats.language_confidence:.2f}){more}; this service summarizes "
                          f"{self.policy.expected()} only (SUMMARIZER_LANGUAGES)",
                          field=field, allowed=sorted(self.policy.languages))

    def _known(self, item: Item) -> InputStatistics | None:
        """The statistics a cache hit brought back, when made the way this inspector makes them."""
        stored = item.derived.get(STATISTICS)
        if not isinstance(stored, dict) or stored.get("method") != self.inspector.method:
            return None
        return InputStatistics.from_dict({k: v for k, v in stored.items() if k != "method"})

    def _warning(self, stats: InputStatistics) -> str:
        return (f"the dialogue looks like {language_name(stats.language)} ({stats.language}, confidence "
                f"{stats.language_confidence:.2f}); the model was trained on {self.policy.expected()}: this "
                "summary may be wrong or in the wrong language")


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"
