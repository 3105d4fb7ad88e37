"""serving.tokenization (``tokenizers`` alone) against transformers' tokenizer on every dialogue of the evaluation
corpora (dialogsum test, samsum validation): same ids, same special tokens, same decoded text."""

from __future__ import annotations

import json
import random
import shutil

import pytest
from transformers import AutoTokenizer

from eval.datasets import SUITE_SETS, load_eval_set
from model_store.store import DEFAULT_MODEL_DIR
from serving.tokenization import ModelTokenizer, clean_up_tokenization

EDGE_CASES = ["", "   ", "héllo  wörld 😀 <s> </s> <mask> don't", "a\n\n\tb", "Tom: ok ,  . ? ! n't 's 've"]


@pytest.fixture(scope="module")
def dialogues() -> list[str]:
    return [example.dialogue for name in SUITE_SETS for example in load_eval_set(name)] + EDGE_CASES


@pytest.fixture(scope="module", params=["shipped model", "BART tokenizer"])
def model_dir(request, tiny_model_dir):
    # The shipped model's tokenizer.json carries the padding and truncation it was saved with; BART's does not.
    return DEFAULT_MODEL_DIR if request.param == "shipped model" else tiny_model_dir


def test_ids_are_transformers_ids_on_every_eval_dialogue(model_dir, dialogues):
    reference = AutoTokenizer.from_pretrained(model_dir)
    tokenizer = ModelTokenizer(model_dir)
    assert len(dialogues) > 1300
    expected = reference(dialogues, add_special_tokens=True, verbose=False)["input_ids"]
    assert tokenizer.encode(dialogues) == expected
    assert max(len(ids) for ids in expected) > 1024  # some dialogues are longer than the context: nothing cut here
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (reference.eos_token_id, reference.pad_token_id)
    assert tokenizer.special_ids == set(reference.all_special_ids)


def test_decoded_text_is_transformers_text(model_dir, dialogues):
    reference = AutoTokenizer.from_pretrained(model_dir)
    tokenizer = ModelTokenizer(model_dir)
    vocab = reference.vocab_size
    rng = random.Random(0)
    # the dialogues' own ids (special tokens included), and id sequences that no text would give
    rows = tokenizer.encode(dialogues) + [[rng.randrange(vocab) for _ in range(rng.randrange(1, 60))]
                                          for _ in range(2000)]
    assert tokenizer.decode(rows) == reference.batch_decode(rows, skip_special_tokens=True)


def test_clean_up_is_transformers_when_the_tokenizer_asks_for_it(tiny_model_dir, tmp_path):
    shutil.copytree(tiny_model_dir, tmp_path / "model")
    settings = tmp_path / "model" / "tokenizer_config.json"
    settings.write_text(json.dumps({**json.loads(settings.read_text()), "clean_up_tokenization_spaces": True}))
    reference = AutoTokenizer.from_pretrained(tmp_path / "model")
    tokenizer = ModelTokenizer(tmp_path / "model")
    texts = ["Tom said , \" I ca n't come . \" Is n't it ? I 'm sure they 're fine ' ok ' !", "Ann : yes , sure ."]
    rows = tokenizer.encode(texts)
    assert tokenizer.clean_up_spaces
    assert tokenizer.decode(rows) == reference.batch_decode(rows, skip_special_tokens=True)
    assert tokenizer.decode(rows) != texts  # byte-level BART gives the text back but for the clean-up
    assert clean_up_tokenization(texts[1]) == "Ann : yes, sure."


def test_a_directory_without_tokenizer_json_names_the_import_command(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="python -m model_store import"):
        ModelTokenizer(tmp_path)
