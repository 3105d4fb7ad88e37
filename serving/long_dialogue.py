"""Long dialogues: read in windows that fit the model, summarized together, the summaries combined.

A dialogue of up to ``long_from_tokens`` is one job, as before: a single conversation scores higher read whole
than in windows. A longer one is split at speaker turns (lines) into
windows of at most ``window_tokens`` tokens, counted with the model's own tokenizer, special tokens included
(so the engine never cuts a window), cut where a new conversation starts (``serving/conversation_boundaries.py``
gives each gap between turns the log-odds of one; see ``_cut_at_conversation_ends``) and, where a window must end
to fit, at the likeliest place it can: a window then holds one conversation rather than the end of one and the
start of the next, which the model (trained on single conversations) would summarize as one. A single turn
longer than a window is split at sentence boundaries, each
piece after the first prefixed with the turn's speaker ("Amanda: "), so the model still knows who speaks; a
sentence longer than a window is cut at the last space that fits (at any character as the very last resort).
Nothing is dropped: every character of the dialogue but line breaks and the spaces at a cut is in a window.

Every window of every dialogue of a request goes to the router in ONE call, so BentoML's adaptive batching
generates them together. The window summaries, in order, joined, are the summary (measured in
bench/long_dialogue.py: joining beats summarizing the join again by far, since each window's summary already
says what happened in it). Only a join longer than ``summary_tokens`` is summarized again, in windows, for at
most ``max_rounds`` rounds in all, and only while a round makes it shorter.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from serving.config import ServingConfig
from serving.conversation_boundaries import SPEAKER, BoundaryModel, shipped
from serving.flow import Call, Item
from serving.protocol import GenerationJob, GenerationResult, LongDialogueInfo, Summary
from serving.routing import Routed, Router
from serving.tokenization import ModelTokenizer

# A sentence ends at . ! ? or … (possibly closed by quotes or brackets) before whitespace.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")


_DEFAULT = {name: field.default for name, field in ServingConfig.model_fields.items()}  # declared once, there


@dataclass(frozen=True)
class LongDialogueSettings:
    """How long dialogues are read (SUMMARIZER_LONG_* in serving/config.py, whose defaults these are)."""

    window_tokens: int = _DEFAULT["long_window_tokens"]
    long_from_tokens: int = _DEFAULT["long_from_tokens"]  # up to this long: read whole, as the model was trained
    summary_tokens: int = _DEFAULT["long_summary_tokens"]
    max_rounds: int = _DEFAULT["long_max_rounds"]


@dataclass(frozen=True)
class _Unit:
    """What the packing places: a whole turn, or a piece of a turn longer than a window."""

    text: str  # without the speaker, for a piece of a long turn
    piece: str  # the dialogue's own text it stands for
    speaker: str = ""  # "Ben: ", written before ``text`` when a window (a line) begins with it
    continues: bool = False  # goes on the line before it when in the same window


@dataclass(frozen=True)
class Window:
    text: str  # what the model reads
    pieces: tuple[str, ...]  # the dialogue's own text in it, in order (``text`` adds line breaks and speakers)


class WindowSplitter:
    """Splits a text into windows of at most ``window_tokens`` tokens of ``count`` (special tokens included), cut
    where ``boundaries`` (default: the shipped weights) says a new conversation starts."""

    def __init__(self, count: Callable[[Sequence[str]], list[int]], window_tokens: int,
                 boundaries: BoundaryModel | None = None) -> None:
        self.count = count
        self.window_tokens = window_tokens
        self.boundaries = boundaries or shipped()
        if self._tokens("") >= window_tokens:
            raise ValueError(f"a window of {window_tokens} tokens holds no text with this tokenizer")

    def fits(self, text: str) -> bool:
        return self._tokens(text) <= self.window_tokens

    def split(self, text: str, tokens: int | None = None) -> list[Window]:
        """The windows of ``text`` in order; one window (``text`` itself) when it fits. ``tokens``: its count
        when already known (the input inspection's), so that a dialogue is not tokenized twice."""
        if (self._tokens(text) if tokens is None else tokens) <= self.window_tokens:
            return [Window(text, (text,))]
        return self._pack(self.units(text))

    def units(self, text: str) -> list[_Unit]:
        """What windows are packed from: each turn (line), a turn longer than a window in pieces."""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        units: list[_Unit] = []
        for line, n in zip(lines, self.count(lines)):
            units.extend([_Unit(line, line)] if n <= self.window_tokens else self._split_turn(line))
        return units

    def _tokens(self, text: str) -> int:
        return self.count([text])[0]

    def _pack(self, units: list[_Unit]) -> list[Window]:
        """As many consecutive units as fit, window after window: turns on their own lines, the sentences of
        one long turn on the same line (a window that begins inside a turn begins with its speaker).

        Packed by adding up the units' own token counts (one batch encode), which is exact for byte-level
        BPE tokenizers (BART's, GPT-2's: a line break is a token of its own), with the cuts where
        conversations end; every window is then counted whole, and where a tokenizer merges across a join the units are
        packed again, greedily, by counting each grown window (exact; a window's worth of tokens encoded per unit)."""
        windows = self._pack_by_sum(units)
        if all(n <= self.window_tokens for n in self.count([window.text for window in windows])):
            return windows
        return self._pack_counting(units)

    def _pack_by_sum(self, units: list[_Unit], by_conversation: bool = True) -> list[Window]:
        """By conversation: cut where conversations end and where windows must end to fit; else as few windows
        as greedy packing needs (what ``_pack_counting`` gives)."""
        special = self._tokens("")
        line_break = self._tokens("\n") - special
        alone = [n - special for n in self.count([u.speaker + u.text for u in units])]  # starting a line
        after = [n - special for n in self.count([" " + u.text for u in units])]  # going on the line before
        if not by_conversation:
            return self._greedy(units, alone, after, line_break, self.window_tokens - special)
        joined = [0] + [after[i] if units[i].continues else line_break + alone[i] for i in range(1, len(units))]
        starts = _cut_at_conversation_ends(units, alone, joined, self.window_tokens - special, self.boundaries)
        return [_window(units[start:end]) for start, end in zip(starts, [*starts[1:], len(units)])]

    @staticmethod
    def _greedy(units: list[_Unit], alone: list[int], after: list[int], line_break: int,
                limit: int) -> list[Window]:
        """Units in order, a new window when the next would take this one past ``limit`` tokens (a unit
        longer than ``limit`` gets a window of its own)."""
        windows: list[Window] = []
        lines: list[str] = []
        pieces: list[str] = []
        used = 0
        for unit, n_alone, n_after in zip(units, alone, after):
            if lines:
                grown = used + (n_after if unit.continues else line_break + n_alone)
                if grown <= limit:
                    if unit.continues:
                        lines[-1] = f"{lines[-1]} {unit.text}"
                    else:
                        lines.append(unit.speaker + unit.text)
                    pieces.append(unit.piece)
                    used = grown
                    continue
                windows.append(Window("\n".join(lines), tuple(pieces)))
            lines, pieces, used = [unit.speaker + unit.text], [unit.piece], n_alone
        if lines:
            windows.append(Window("\n".join(lines), tuple(pieces)))
        return windows

    def _pack_counting(self, units: list[_Unit]) -> list[Window]:
        windows: list[Window] = []
        lines: list[str] = []
        pieces: list[str] = []
        for unit in units:
            if lines:
                grown = ([*lines[:-1], f"{lines[-1]} {unit.text}"] if unit.continues
                         else [*lines, unit.speaker + unit.text])
                if self.fits("\n".join(grown)):
                    lines = grown
                    pieces.append(unit.piece)
                    continue
                windows.append(Window("\n".join(lines), tuple(pieces)))
            lines, pieces = [unit.speaker + unit.text], [unit.piece]
        if lines:
            windows.append(Window("\n".join(lines), tuple(pieces)))
        return windows

    def _split_turn(self, line: str) -> list[_Unit]:
        """A turn longer than a window: its sentences (a sentence longer than a window cut), each a unit that
        fits with the speaker's name before it."""
        speaker = SPEAKER.match(line)
        said = line[speaker.end():] if speaker else line
        prefix = f"{speaker.group(1).strip()}: " if speaker else ""
        if not self.fits(prefix + "x"):  # a speaker's name that leaves no room in a window: not repeated
            prefix = ""
        fragments: list[str] = []
        for sentence in (s for s in _SENTENCE_END.split(said) if s.strip()):
            fragments.extend([sentence] if self.fits(prefix + sentence) else self._hard_cut(sentence, prefix))
        return [_Unit(fragment, (line[:speaker.end()] if speaker and i == 0 else "") + fragment,
                      speaker=prefix, continues=i > 0) for i, fragment in enumerate(fragments)]

    def _hard_cut(self, sentence: str, prefix: str) -> list[str]:
        """The last resort: the longest beginnings that fit, cut at a space when one is in their second half."""
        parts = []
        rest = sentence
        while rest:
            cut = self._longest_fitting(rest, prefix)
            if cut < len(rest):
                space = rest.rfind(" ", 0, cut + 1)
                if space > cut // 2:
                    cut = space
            parts.append(rest[:cut].strip())
            rest = rest[cut:].strip()
        return [p for p in parts if p]

    def _longest_fitting(self, text: str, prefix: str) -> int:
        """The most characters of ``text`` that fit after ``prefix`` (at least 1). Each probe encodes about a
        window's worth of text, never the whole rest: a 20,000-character line without a space is cut fast."""
        fits, probe = 0, min(len(text), self.window_tokens)
        while self.fits(prefix + text[:probe]):
            fits = probe
            if probe == len(text):
                return fits
            probe = min(len(text), probe * 2)
        too_long = probe
        while too_long - fits > 1:
            middle = (fits + too_long) // 2
            fits, too_long = (middle, too_long) if self.fits(prefix + text[:middle]) else (fits, middle)
        return max(fits, 1)


def _window(units: Sequence[_Unit]) -> Window:
    """Units as the model reads them: turns on their own lines, the pieces of one long turn on one line."""
    lines: list[str] = []
    for unit in units:
        if lines and unit.continues:
            lines[-1] = f"{lines[-1]} {unit.text}"
        else:
            lines.append(unit.speaker + unit.text)
    return Window("\n".join(lines), tuple(unit.piece for unit in units))


# A cut where a new conversation starts with at least these log-odds (p > 0.27): chosen with the window on
# joined DialogSum validation dialogues (README, "Long dialogues"); lower cuts more often (more, shorter
# windows, each summary shorter than the conversation's), higher fewer (windows that span two conversations).
_CUT_LOG_ODDS = -1.0
_CUT_IN_A_TURN = 50.0  # a cut between the pieces of one long turn: only where a window must end there


def _cut_at_conversation_ends(units: Sequence[_Unit], alone: Sequence[int], joined: Sequence[int], limit: int,
                              boundaries: BoundaryModel) -> list[int]:
    """The first unit of each window of at most ``limit`` tokens: cut where a new conversation most likely
    starts (``serving/conversation_boundaries.py``), as many windows as there are conversations, and where a
    window must end to fit, at the likeliest of the places it can (dynamic programming over cut positions).

    A cut costs ``_CUT_LOG_ODDS`` minus its log-odds: negative, so taken, where a new conversation is likely;
    positive, so avoided unless needed, elsewhere. ``alone[i]``: unit i's tokens when it starts a window;
    ``joined[i]``: what it adds to the window before. The work is units x units per window, linear in the
    dialogue's length."""
    n = len(units)
    turns: list[str] = []  # the dialogue's turns, a long turn's pieces together again (one turn to the model)
    for unit in units:
        if unit.continues and turns:
            turns[-1] += " " + unit.text
        else:
            turns.append(unit.speaker + unit.text)
    log_odds = iter(boundaries.log_odds(turns))
    cost = [_CUT_IN_A_TURN if unit.continues else _CUT_LOG_ODDS - next(log_odds) for unit in units]
    prefix = list(itertools.accumulate(joined, initial=0))
    best = [0.0] + [math.inf] * n  # best[j]: the least cost of the units before j in whole windows
    start = [0] * (n + 1)  # start[j]: where the last of those windows starts
    for end in range(1, n + 1):
        first = end - 1
        while first >= 0 and (first == end - 1 or alone[first] + prefix[end] - prefix[first + 1] <= limit):
            total = best[first] + (cost[first] if first else 0.0)
            if total < best[end]:
                best[end], start[end] = total, first
            first -= 1
    starts, end = [], n
    while end > 0:
        end = start[end]
        starts.append(end)
    return starts[::-1]


def token_counter(tokenizer: ModelTokenizer) -> Callable[[Sequence[str]], list[int]]:
    """Tokens each text is to the model, its special tokens included (what the engine's context counts)."""
    return lambda texts: [len(ids) for ids in tokenizer.encode(texts)]


class LongDialogues:
    """The flow's Generation: a dialogue that fits as one job, a longer one in windows, then combined.

    ``settings`` None: every dialogue is one job (the engine truncates what does not fit, as before)."""

    def __init__(self, router: Router, tokenizer: ModelTokenizer, settings: LongDialogueSettings | None,
                 context_tokens: int) -> None:
        self.router = router
        self.settings = settings
        self.splitter = None
        self.whole_tokens = context_tokens
        if settings is not None:
            window = min(settings.window_tokens, context_tokens)  # a window the engine would cut is no window
            self.splitter = WindowSplitter(token_counter(tokenizer), window)
            # read whole up to long_from_tokens (never past the context), in windows past it
            self.whole_tokens = max(window, min(settings.long_from_tokens, context_tokens))

    async def __call__(self, items: Sequence[Item], call: Call) -> None:
        rounds: list[Routed] = []
        try:
            await self._summarize(items, call, rounds)
        finally:
            if call.observed is not None and rounds:  # once per request: every round's tokens, the last backend
                call.observed.routed(Routed([r for routed in rounds for r in routed.results], rounds[-1].backend,
                                            fallback=any(routed.fallback for routed in rounds)))

    async def _summarize(self, items: Sequence[Item], call: Call, rounds: list[Routed]) -> None:
        # tokenizing is CPU work: off the event loop, which keeps answering probes and other requests
        splits = await asyncio.to_thread(lambda: [self._split(item) for item in items])
        results, fallback = await self._generate([w.text for windows in splits for w in windows], call, rounds,
                                                 dialogues=len(items))
        at = 0
        todo: list[_Long] = []
        for item, windows in zip(items, splits):
            mine, at = results[at:at + len(windows)], at + len(windows)
            if len(windows) == 1:  # it fits: exactly as a direct job
                r = mine[0]
                item.summary = Summary(summary=r.summary, model=r.model, backend=r.backend,
                                       input_tokens=r.input_tokens, output_tokens=r.output_tokens,
                                       truncated=r.truncated, fallback=fallback)
            else:
                todo.append(_Long(item, windows=len(windows), input_tokens=sum(r.input_tokens for r in mine),
                                  truncated=any(r.truncated for r in mine), last=mine, fallback=fallback,
                                  generations=len(mine), generated_tokens=sum(r.output_tokens for r in mine)))
        await self._combine(todo, call, rounds)
        for long in todo:
            last = long.last[-1]
            long.item.summary = Summary(
                summary=join_summaries(long.last), model=last.model, backend=last.backend,
                input_tokens=long.input_tokens, output_tokens=sum(r.output_tokens for r in long.last),
                truncated=long.truncated, fallback=long.fallback,
                long_dialogue=LongDialogueInfo(windows=long.windows, rounds=long.rounds,
                                               window_tokens=self.splitter.window_tokens,
                                               generations=long.generations,
                                               generated_tokens=long.generated_tokens))

    def _split(self, item: Item) -> list[Window]:
        """One window (the dialogue as it is) up to ``whole_tokens``; past it, windows of ``window_tokens``.
        Two sizes, measured apart (bench/long_dialogue.py): a single conversation read whole scores higher
        than in small windows, a meeting of several higher in small windows than in large ones. The count is
        the input inspection's when it ran (a dialogue is tokenized once per request)."""
        if self.splitter is None:
            return [Window(item.dialogue, (item.dialogue,))]
        tokens = item.facts.get("input_tokens")
        if tokens is None:
            tokens = self.splitter.count([item.dialogue])[0]
        if tokens <= self.whole_tokens:
            return [Window(item.dialogue, (item.dialogue,))]
        return self.splitter.split(item.dialogue, tokens)

    async def _combine(self, todo: list[_Long], call: Call, rounds: list[Routed]) -> None:
        """Summarize the joined summaries again, in windows, while longer than the target (bounded rounds)."""
        assert self.settings is not None or not todo
        while True:
            again = [long for long in todo if not long.done and long.rounds < self.settings.max_rounds
                     and not self._short_enough(long)]
            if not again:
                return
            joins = ["\n".join(r.summary.strip() for r in long.last) for long in again]  # one summary a line
            splits = await asyncio.to_thread(lambda: [self.splitter.split(join) for join in joins])
            results, fallback = await self._generate([w.text for windows in splits for w in windows], call, rounds,
                                                     dialogues=len(again))
            at = 0
            for long, windows in zip(again, splits):
                mine, at = results[at:at + len(windows)], at + len(windows)
                long.generations += len(mine)
                long.generated_tokens += sum(r.output_tokens for r in mine)
                if sum(r.output_tokens for r in mine) >= sum(r.output_tokens for r in long.last):
                    long.done = True  # no shorter: keep the previous round's summaries, stop here
                    continue
                long.last = mine
                long.rounds += 1
                long.fallback = long.fallback or fallback

    def _short_enough(self, long: _Long) -> bool:
        return sum(r.output_tokens for r in long.last) <= self.settings.summary_tokens

    async def _generate(self, texts: list[str], call: Call, rounds: list[Routed],
                        dialogues: int) -> tuple[list[GenerationResult], bool]:
        now = time.time()
        # The primary's timeout is for a request's dialogues read once each; windows are more to read: the
        # timeout grows with the windows per dialogue (the request timeout still bounds the whole request).
        scale = max(1.0, len(texts) / max(1, dialogues))
        routed = await self.router.generate([GenerationJob(text=t, settings=call.settings, enqueued_at=now)
                                             for t in texts], primary_timeout_s=self.router.primary_timeout_s * scale)
        rounds.append(routed)
        return routed.results, routed.fallback


@dataclass
class _Long:
    """A dialogue read in windows, on its way through the rounds."""

    item: Item
    windows: int
    input_tokens: int
    truncated: bool
    last: list[GenerationResult]  # the latest round's summaries, in order
    fallback: bool
    generations: int
    generated_tokens: int
    rounds: int = 1  # rounds whose summaries make up the answer: 1 is the windows' summaries joined
    done: bool = False


def join_summaries(results: Sequence[GenerationResult | Summary]) -> str:
    """The summary of a dialogue read in windows: the windows' summaries, in order, one after the other."""
    return " ".join(s for s in (r.summary.strip() for r in results) if s)
