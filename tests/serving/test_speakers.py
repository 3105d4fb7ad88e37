"""Speaker placeholders (serving/speakers.py): names hidden from a placeholder model and put back in its summary,
through the engines' shared path (``Engine.generate``) with the real BART tokenizer; other models untouched."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from serving.engine_base import Engine
from serving.protocol import GenerationJob
from serving.speakers import FLAG, SpeakerNames

OLIVIA = "Olivia: Who are you voting for in this election?\nOliver: Liberals as always.\nOlivia: Me too!!\nOliver: Great"


def test_speakers_are_numbered_by_first_appearance_and_every_mention_is_hidden():
    dialogue = "Anna Smith: Hi Tom, is Anna's room free?\nTom: Yes, Anna.\nAnna Smith: Thanks, Tom!"
    speakers = SpeakerNames.of(dialogue)
    assert speakers.placeholders == {"#Person1#": "Anna Smith", "#Person2#": "Tom"}
    # the full name, its unshared first word and the possessive; "Tomorrow" is another word
    assert speakers.hide(dialogue + " Tomorrow.") == (
        "#Person1#: Hi #Person2#, is #Person1#'s room free?\n#Person2#: Yes, #Person1#.\n"
        "#Person1#: Thanks, #Person2#! Tomorrow.")
    assert speakers.restore("#Person2# lends #Person1#'s room.") == "Tom lends Anna Smith's room."


def test_placeholders_already_in_the_dialogue_are_kept_and_unknown_ones_left_as_written():
    dialogue = "#Person1#: Hello.\nMia: Hi, I am new here.\n#Person1#: Welcome, Mia."
    speakers = SpeakerNames.of(dialogue)
    assert speakers.hide(dialogue) == "#Person1#: Hello.\n#Person2#: Hi, I am new here.\n#Person1#: Welcome, #Person2#."
    assert speakers.restore("#Person1# welcomes #Person2#. #Person3# waits.") == "#Person1# welcomes Mia. #Person3# waits."


def test_a_one_letter_speaker_is_replaced_where_it_speaks_only():
    dialogue = "A: Hi Tom, A friend of mine has a puppy.\nB: A puppy!\nA: Yes."
    assert SpeakerNames.of(dialogue).hide(dialogue) == (
        "#Person1#: Hi Tom, A friend of mine has a puppy.\n#Person2#: A puppy!\n#Person1#: Yes.")


def test_a_dialogue_without_named_speakers_is_unchanged():
    for text in ["just a sentence without turns", "#Person1#: Hi\n#Person2#: Hello", "10:30: the meeting starts"]:
        speakers = SpeakerNames.of(text)
        assert speakers.hide(text) == text and speakers.restore("#Person1# x") == "#Person1# x"


class EchoEngine(Engine):
    """The engines' shared path with a predict that returns what it was given (no model in between), so the
    test sees exactly what a placeholder model would read and what the engine makes of its output."""

    engine = "onnx-cpu"
    seen: list[str] = []

    def predict(self, input_ids, attention_mask, settings):
        rows = [row[mask.astype(bool)].tolist() for row, mask in zip(input_ids, attention_mask)]
        self.seen.extend(self.tokenizer.decode(rows))
        width = max(len(r) for r in rows)
        return np.array([r + [self.tokenizer.pad_token_id] * (width - len(r)) for r in rows], dtype=np.int64)


@pytest.fixture()
def placeholder_model(tiny_model_dir, tmp_path):
    model = shutil.copytree(tiny_model_dir, tmp_path / "placeholder-bart")
    config = json.loads((model / "generation_config.json").read_text())
    (model / "generation_config.json").write_text(json.dumps({**config, FLAG: True}))
    return model


def test_a_placeholder_model_reads_placeholders_and_its_summary_gets_the_names_back(placeholder_model):
    engine = EchoEngine(placeholder_model)
    EchoEngine.seen = []
    [result] = engine.generate([GenerationJob(text=OLIVIA, settings=engine.defaults, enqueued_at=0.0)])
    assert "Olivia" not in EchoEngine.seen[0] and "Oliver" not in EchoEngine.seen[0]
    assert EchoEngine.seen[0].startswith("#Person1#: Who are you voting for")
    assert result.summary == OLIVIA  # the echoed placeholders became the names again


def test_another_model_reads_the_names(tiny_model_dir):
    engine = EchoEngine(tiny_model_dir)
    EchoEngine.seen = []
    [result] = engine.generate([GenerationJob(text=OLIVIA, settings=engine.defaults, enqueued_at=0.0)])
    assert EchoEngine.seen[0] == OLIVIA and result.summary == OLIVIA
    assert engine.speaker_placeholders is False
