"""serving/inspection.py with the shipped model's tokenizer and py3langid's shipped model: the statistics, the
language of real English corpus dialogues (never warned about) and of hand-written German, French and
Japanese ones, and the language policy as warnings or a refusal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from eval.datasets import load_eval_set
from serving.errors import ErrorCode
from serving.flow import Call, Item, Refusal
from serving.inspection import (UNDETERMINED, InputInspection, Inspector, LanguageIdentifier, LanguagePolicy)
from serving.protocol import GenerationSettings
from serving.tokenization import ModelTokenizer

MODEL_DIR = Path(__file__).resolve().parents[2] / "model_store" / "default_model"
SETTINGS = GenerationSettings(num_beams=1, max_new_tokens=8, min_new_tokens=0, length_penalty=1.0,
                              no_repeat_ngram_size=0)

# Written for these tests: everyday support and team chats.
FOREIGN = {
    "de": ["Anna: Hallo Tom, hast du heute Abend Zeit? Wir wollten doch ins Kino gehen.\nTom: Ja klar, um acht "
           "Uhr am Bahnhof?\nAnna: Perfekt, bis dann!",
           "Kunde: Guten Tag, meine Bestellung ist immer noch nicht angekommen.\nSupport: Das tut mir leid. "
           "Können Sie mir bitte die Bestellnummer nennen?\nKunde: Ja, sie lautet 48213.\nSupport: Danke, "
           "das Paket wird morgen geliefert."],
    "fr": ["Marie: Salut Paul, tu viens ce soir au restaurant avec nous ?\nPaul: Oui, bien sûr ! À quelle "
           "heure ?\nMarie: Vers vingt heures, je réserve une table.",
           "Client: Bonjour, je n'arrive plus à me connecter à mon compte depuis hier.\nConseiller: Avez-vous "
           "essayé de réinitialiser votre mot de passe ?\nClient: Oui, mais je ne reçois pas le courriel."],
    "ja": ["さくら: 明日の会議は何時からですか？\nけんた: 午前十時からです。資料は準備できていますか？\nさくら: はい、今日中に送ります。",
           "お客様: 注文した商品がまだ届いていません。\n担当者: 申し訳ございません。注文番号を教えていただけますか？\n"
           "お客様: 12345です。\n担当者: 確認いたします。明日お届けの予定です。"],
}


@pytest.fixture(scope="module")
def inspector() -> Inspector:
    return Inspector(ModelTokenizer(MODEL_DIR), 1024, LanguageIdentifier(min_confidence=0.9, min_letters=20))


def test_statistics_of_a_dialogue(inspector):
    stats = inspector.statistics("Amanda: I baked cookies. Do you want some?\nJerry: Sure!\n"
                                 "Amanda: I'll bring you tomorrow at 10:30 :-)\njerry : thanks")
    assert stats.speakers == 2  # names case-folded; "10:30" is no speaker
    assert stats.language == "en" and stats.language_confidence >= 0.9
    assert stats.tokens == len(inspector.tokenizer.encode([
        "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow at 10:30 :-)\n"
        "jerry : thanks"])[0])
    assert not stats.over_context and stats.fragmented_words < 0.2
    rare = inspector.statistics("A: antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis\nB: ok")
    assert rare.fragmented_words == pytest.approx(2 / 5)  # of A, antidis..., pneumono..., B, ok
    assert inspector.statistics("A: hello " * 600).over_context
    # A lone surrogate (JSON allows "\ud800") is counted as a replacement character, not an error.
    assert inspector.statistics("Amanda: I baked cookies \ud800 do you want some of them today?").language == "en"


def test_english_corpus_dialogues_are_english_or_undetermined(inspector):
    """Every SAMSum validation and DialogSum test dialogue: the false-warning rate the README reports."""
    dialogues = [e.dialogue for name in ("samsum_validation", "dialogsum_test") for e in load_eval_set(name)]
    languages = [inspector.statistics(d).language for d in dialogues]
    wrong = [(lang, d[:80]) for lang, d in zip(languages, dialogues) if lang not in ("en", UNDETERMINED)]
    assert wrong == []
    assert languages.count("en") / len(dialogues) > 0.97


def test_short_dialogues_are_undetermined_not_misidentified(inspector):
    for short in ("A: ok\nB: thx", "Tom: Yes\nAnna: no", "#Person1#: Hi.\n#Person2#: Hello!", "Bob: 10:30?"):
        assert inspector.statistics(short).language == UNDETERMINED, short


@pytest.mark.parametrize("language", sorted(FOREIGN))
def test_german_french_japanese_dialogues(inspector, language):
    for dialogue in FOREIGN[language]:
        stats = inspector.statistics(dialogue)
        assert stats.language == language and stats.language_confidence >= 0.9, (dialogue, stats)


def run(step: InputInspection, dialogues: list[str], route: str = "/summarize_batch") -> list[Item]:
    items = [Item(d) for d in dialogues]
    asyncio.run(step.before(items, Call("m", SETTINGS, route)))
    return items


def test_warning_for_another_language_and_facts_for_later_steps(inspector):
    observed = []
    step = InputInspection(inspector, LanguagePolicy(frozenset({"en"}), "warn"), observe=observed.append)
    english = "Amanda: I baked cookies. Do you want some?\nJerry: Sure, I would love some!"
    meeting = "\n".join([english] * 80)  # past INLINE_CHARS: the request is inspected in a worker thread
    items = run(step, [english, FOREIGN["de"][0], meeting])
    assert items[0].warnings == [] and items[2].warnings == [] and items[2].facts["input_statistics"].over_context
    [notice] = items[1].warnings
    assert notice.code == "language" and "German (de" in notice.message and "English (en)" in notice.message
    assert FOREIGN["de"][0] not in notice.message
    assert [o.language for o in observed] == ["en", "de", "en"]
    assert items[0].facts["input_tokens"] == observed[0].tokens and items[1].facts["language"] == "de"


def test_refusal_names_the_dialogue_and_the_languages_allowed(inspector):
    observed = []
    step = InputInspection(inspector, LanguagePolicy(frozenset({"en", "fr"}), "refuse"), observe=observed.append)
    assert [i.warnings for i in run(step, [FOREIGN["fr"][0]])] == [[]]  # French is allowed here
    with pytest.raises(Refusal) as refused:
        run(step, ["Amanda: I baked cookies. Do you want some?\nJerry: Sure!", FOREIGN["ja"][0], FOREIGN["de"][1]])
    exc = refused.value
    assert exc.status == 422 and exc.code == ErrorCode.UNSUPPORTED_LANGUAGE
    assert exc.field == "dialogues[1]" and exc.allowed == ["en", "fr"]
    assert "Japanese (ja" in exc.message and "2 of the 3" in exc.message and "さくら" not in exc.message
    assert len(observed) == 4  # refused dialogues count for drift too
    with pytest.raises(Refusal) as single:
        run(step, [FOREIGN["de"][0]], route="/summarize")
    assert single.value.field == "dialogue"


def test_ignore_policy(inspector):
    step = InputInspection(inspector, LanguagePolicy(frozenset({"en"}), "ignore"))
    assert [i.warnings for i in run(step, FOREIGN["ja"])] == [[], []]
