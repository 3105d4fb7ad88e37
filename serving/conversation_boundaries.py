"""Where one conversation ends and the next begins in a long dialogue: the log-odds that a gap between two turns
is such a boundary.

A meeting, or a day of support chats pasted as one, is several conversations; the model was trained on single
ones, so a window should hold one conversation, not the end of one and the start of the next. Lexical
similarity across a gap alone (TextTiling) finds few of these boundaries in short-turn dialogues: its cuts hit
21 % of them on joined DialogSum validation dialogues. What marks them is how people open and close a
conversation ("Good morning", "Excuse me", "Can I help you" after "Bye", "Thanks") and a speaker new to the
talk. So a logistic regression over the words of the two turns before and the two after each gap, the lexical
similarity across it and whether the next speaker is new, learned from the training dialogues joined
(``python -m training.boundaries``), gives each gap its log-odds; ``serving/long_dialogue.py`` cuts where they
are high, and where a window must be cut to fit. The weights ship beside this file
(``conversation_boundaries.json``, plain JSON: no model runtime, a few milliseconds per meeting).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

WEIGHTS_PATH = Path(__file__).with_name("conversation_boundaries.json")

# "Amanda: ...", "#Person1#: ...", "Dr. Smith: ..." at the start of a turn.
SPEAKER = re.compile(r"^\s*([^:\n]{1,40}?):[ \t]+(?=\S)")
_TOKEN = re.compile(r"[a-z0-9']+")  # the classifier's words: lowercased, digits kept ("9", "o'clock")
_RECENT_SPEAKERS = 6  # a speaker none of the last 6 turns had is new to the talk

# Words that say nothing about what is talked about (they are in every topic); the rest is compared.
_STOP_WORDS = frozenset("""
a about after again all also am an and any are as at be because been before being but by can could did do does
doing don down for from get gets getting go goes going good got had has have having he her here him his how i if
in into is it its just know let like me more much my no not now of off oh ok okay on one only or our out over
please really right said say see she should so some sure tell than thank thanks that the their them then there
these they think this those to too up us very want was we well were what when where which who why will with would
yeah yes you your
""".split())
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_TOPIC_BLOCK = 5  # turns on each side of a gap compared (TextTiling's block): a few turns, not one reply


def split_speaker(turn: str) -> tuple[str, str]:
    """("Amanda", "I baked cookies.") for "Amanda: I baked cookies."; ("", turn) without a speaker."""
    match = SPEAKER.match(turn)
    return (match.group(1).strip(), turn[match.end():]) if match else ("", turn)


def _content_words(said: str) -> Counter[str]:
    return Counter(w for w in map(str.lower, _WORD.findall(said)) if len(w) > 2 and w not in _STOP_WORDS)


def _cosine(a: Counter[str], b: Counter[str]) -> float:
    if not a or not b:
        return 0.0
    dot = sum(n * b[word] for word, n in a.items() if word in b)
    return dot / math.sqrt(sum(n * n for n in a.values()) * sum(n * n for n in b.values()))


def gap_similarity(said: Sequence[str]) -> list[float]:
    """For each gap before turn i (i >= 1; [0] is 0.0), how alike the talk is on both sides (TextTiling,
    Hearst 1997): the cosine of the content-word counts of the ``_TOPIC_BLOCK`` turns before and after."""
    words = [_content_words(s) for s in said]
    similarity = [0.0]
    for gap in range(1, len(said)):
        similarity.append(_cosine(sum(words[max(0, gap - _TOPIC_BLOCK):gap], Counter()),
                                  sum(words[gap:gap + _TOPIC_BLOCK], Counter())))
    return similarity


def _similarity_feature(similarity: float) -> str:
    if similarity == 0.0:
        return "sim:0"
    return "sim:" + ("a" if similarity < 0.05 else "b" if similarity < 0.1 else "c" if similarity < 0.2 else "d")


def gap_features(turns: Sequence[str]) -> list[set[str]]:
    """The features of each gap between turns (``len(turns) - 1`` sets, the gap before turn 1 first): the
    words of the turn before (``p:``), the one before it (``pp:``), the turn after (``n:``) and the one after it
    (``nn:``), the first word and the first two of the turn after, the last word of the turn before, the
    similarity across the gap (bucketed) and ``newspk`` when the next speaker is new to the last turns."""
    speakers, said = zip(*(split_speaker(t) for t in turns)) if turns else ((), ())
    words = [_TOKEN.findall(s.lower()) for s in said]
    similarity = gap_similarity(said)
    out = []
    for gap in range(1, len(turns)):
        before, after = words[gap - 1], words[gap]
        features = {"bias", _similarity_feature(similarity[gap])}
        features.update("p:" + w for w in before)
        features.update("n:" + w for w in after)
        if gap >= 2:
            features.update("pp:" + w for w in words[gap - 2])
        if gap + 1 < len(turns):
            features.update("nn:" + w for w in words[gap + 1])
        if after:
            features.add("nf:" + after[0])
        if len(after) > 1:
            features.add(f"nb:{after[0]}_{after[1]}")
        if before:
            features.add("pl:" + before[-1])
        if speakers[gap] and speakers[gap] not in speakers[max(0, gap - _RECENT_SPEAKERS):gap]:
            features.add("newspk")
        out.append(features)
    return out


class BoundaryModel:
    """Log-odds that a conversation ends at each gap between turns: a sum of feature weights."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.weights = dict(weights)

    @classmethod
    def load(cls, path: Path = WEIGHTS_PATH) -> BoundaryModel:
        return cls(json.loads(path.read_text(encoding="utf-8"))["weights"])

    def log_odds(self, turns: Sequence[str]) -> list[float]:
        """One value per turn: the log-odds that a new conversation starts with it (turn 0: 0.0)."""
        weights = self.weights
        return [0.0] + [sum(weights.get(f, 0.0) for f in features) for features in gap_features(turns)]


@cache
def shipped() -> BoundaryModel:
    """The weights shipped with the service (read once per process)."""
    return BoundaryModel.load()


@cache
def shipped_sha256() -> str:
    """What the shipped weights are: part of every cache key (new weights cut meetings elsewhere)."""
    return hashlib.sha256(WEIGHTS_PATH.read_bytes()).hexdigest()
