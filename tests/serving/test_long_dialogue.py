"""Long dialogues (serving/long_dialogue.py): the split into windows with the real BART tokenizer, and the
generation through the flow with a router whose backend is a recording fake."""

from __future__ import annotations

import asyncio
import re

import pytest

from eval.datasets import load_eval_set
from serving.flow import Call, Flow, Step
from serving.long_dialogue import LongDialogues, LongDialogueSettings, WindowSplitter, token_counter
from serving.protocol import BackendName, EngineName, GenerationOutcome, GenerationResult, GenerationSettings
from serving.routing import Backend, Router
from serving.tokenization import ModelTokenizer

SETTINGS = GenerationSettings(num_beams=2, max_new_tokens=7, min_new_tokens=1, length_penalty=1.0,
                              no_repeat_ngram_size=3)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir) -> ModelTokenizer:
    """BART's tokenizer (the tiny model's is the real one, from SUMMARIZER_BART_TOKENIZER / ../shared)."""
    return ModelTokenizer(tiny_model_dir)


@pytest.fixture(scope="module")
def meeting() -> str:
    """Six DialogSum test dialogues one after the other: about 1,300 tokens of real turns."""
    return "\n".join(example.dialogue for example in load_eval_set("dialogsum_test")[:6])


def tokens(tokenizer: ModelTokenizer, text: str) -> int:
    return len(tokenizer.encode([text])[0])


def words(text: str) -> list[str]:
    return text.split()


def test_a_dialogue_that_fits_is_one_window_as_it_is(tokenizer):
    dialogue = "Amanda: I baked cookies. Do you want some?\n\nJerry: Sure!  "
    [window] = WindowSplitter(token_counter(tokenizer), 64).split(dialogue)
    assert window.text == dialogue


@pytest.mark.parametrize("window_tokens", [64, 200, 1024])
def test_windows_keep_whole_turns_in_order_and_each_fits(tokenizer, meeting, window_tokens):
    windows = WindowSplitter(token_counter(tokenizer), window_tokens).split(meeting)
    lines = [line.strip() for line in meeting.splitlines() if line.strip()]
    assert tokens(tokenizer, meeting) > 1024  # even the model's whole context is not enough
    assert len(windows) > 1
    assert all(tokens(tokenizer, w.text) <= window_tokens for w in windows)
    if window_tokens > max(tokens(tokenizer, line) for line in lines):  # no turn longer than a window here
        # every window is whole turns, and the windows' turns are the dialogue's, in order: nothing dropped
        assert [line for w in windows for line in w.text.split("\n")] == lines
    assert words(" ".join(p for w in windows for p in w.pieces)) == words(meeting)
    # no more windows than one per conversation (6) plus what packing each as full as it goes needs
    splitter = WindowSplitter(token_counter(tokenizer), window_tokens)
    greedy = splitter._pack_counting(splitter.units(meeting))
    for w, after in zip(greedy, greedy[1:]):
        assert not splitter.fits(w.text + "\n" + after.text.split("\n")[0])
    assert len(greedy) <= len(windows) <= len(greedy) + 6


# Two conversations of a support desk, one after the other: the first closes ("Bye"), the second opens.
BREAD = ["Ann: Shall we bake the bread with rye flour?", "Bob: Rye flour makes the bread heavy.",
         "Ann: Then wheat flour, and more yeast for the dough.", "Bob: The dough needs an hour to rise.",
         "Ann: Great, thanks for the tip. Bye!"]
CAR = ["Ann: Good morning, how can I help you?", "Bob: My car makes a noise when I brake.",
       "Ann: The brake pads of your car may be worn.", "Bob: How much are new brake pads?",
       "Ann: About eighty dollars, fitted.", "Bob: Fine, I will bring the car in on Monday."]


def test_a_new_conversation_is_likelier_where_one_closes_and_the_next_opens():
    from serving.conversation_boundaries import shipped

    log_odds = shipped().log_odds(BREAD + CAR)
    start = len(BREAD)
    assert len(log_odds) == len(BREAD + CAR) and log_odds[0] == 0.0
    assert log_odds[start] > 0 > max(log_odds[1:start] + log_odds[start + 1:])


def test_windows_are_cut_where_a_new_conversation_starts(tokenizer):
    # both conversations fit in one window, but not together: packing by size alone fills the first window
    # past the end of the first conversation; by conversation, the cut falls between them
    dialogue = "\n".join(BREAD + CAR)
    splitter = WindowSplitter(token_counter(tokenizer), tokens(tokenizer, "\n".join(BREAD + CAR[:3])))
    by_size = splitter._pack_by_sum(splitter.units(dialogue), by_conversation=False)
    windows = splitter.split(dialogue)
    assert len(by_size) == 2 and by_size[0].text.endswith(CAR[2])
    assert [w.text for w in windows] == ["\n".join(BREAD), "\n".join(CAR)]
    assert all(tokens(tokenizer, w.text) <= splitter.window_tokens for w in windows)


def test_a_window_long_enough_for_both_conversations_still_holds_one(tokenizer):
    # the window holds the whole dialogue, but a dialogue longer than long_from_tokens is read in windows:
    # one per conversation, not one for both
    dialogue = "\n".join(BREAD + CAR)
    splitter = WindowSplitter(token_counter(tokenizer), 1024)
    windows = splitter._pack(splitter.units(dialogue))
    assert [w.text for w in windows] == ["\n".join(BREAD), "\n".join(CAR)]


def test_one_conversation_longer_than_a_window_is_cut_where_it_must_and_nothing_is_lost(tokenizer):
    dialogue = "\n".join(CAR * 3)
    splitter = WindowSplitter(token_counter(tokenizer), tokens(tokenizer, "\n".join(CAR)) + 2)
    windows = splitter.split(dialogue)
    assert len(windows) >= 3
    assert all(tokens(tokenizer, w.text) <= splitter.window_tokens for w in windows)
    assert [line for w in windows for line in w.text.split("\n")] == CAR * 3


def test_a_turn_longer_than_a_window_is_split_at_sentences_with_its_speaker(tokenizer):
    sentences = [f"Point {i} of the budget is about the {word} costs, which rose again this quarter."
                 for i, word in enumerate(["travel", "office", "software", "hardware", "training", "hiring"] * 3)]
    dialogue = "Anna: Shall we start?\nMr. Ben Holt: " + " ".join(sentences) + "\nAnna: Thanks, Ben."
    windows = WindowSplitter(token_counter(tokenizer), 60).split(dialogue)
    assert all(tokens(tokenizer, w.text) <= 60 for w in windows)
    assert words(" ".join(p for w in windows for p in w.pieces)) == words(dialogue)
    ben = [line for w in windows for line in w.text.split("\n") if "Point" in line]
    assert len(ben) > 3
    assert all(line.startswith("Mr. Ben Holt: Point ") for line in ben)  # the speaker, again on every piece
    assert all(line.endswith("quarter.") for line in ben)  # cut at sentence ends only
    assert windows[0].text.startswith("Anna: Shall we start?")
    # Anna's reply on its own line (a cut between two turns is cheaper than one more inside Ben's)
    assert windows[-1].text.split("\n")[-1] == "Anna: Thanks, Ben."


def test_a_sentence_longer_than_a_window_is_cut_as_the_last_resort(tokenizer):
    rambling = " ".join(f"and then item{i}" for i in range(80))  # no sentence end at all
    code = "x" * 3000  # no space either
    dialogue = f"Tom: {rambling}\nEve: {code}"
    windows = WindowSplitter(token_counter(tokenizer), 40).split(dialogue)
    assert all(tokens(tokenizer, w.text) <= 40 for w in windows)
    pieces = [p for w in windows for p in w.pieces]
    assert "".join(" ".join(pieces).split()) == "".join(dialogue.split())  # every character but spaces, in order
    tom = [line for w in windows for line in w.text.split("\n") if not line.startswith("Eve")]
    assert all(re.fullmatch(r"Tom: (and then item\d+ ?)+", line) for line in tom)  # cut between words
    assert sum(line.startswith("Eve: x") for w in windows for line in w.text.split("\n")) > 3


def test_a_window_that_holds_no_text_is_refused(tokenizer):
    with pytest.raises(ValueError, match="holds no text"):
        WindowSplitter(token_counter(tokenizer), 2)  # BART's <s> and </s> alone


# --------------------------------------------------------------------------- generation, with a fake backend


class RecordingBackend:
    """Answers each job with "<its first word> spoke." (a window's first speaker), recording every call."""

    def __init__(self) -> None:
        self.calls: list[list] = []

    async def __call__(self, jobs):
        self.calls.append(list(jobs))
        return [GenerationOutcome(result=GenerationResult(
            summary=f"{job.text.split()[0].rstrip(':')} spoke.", input_tokens=len(job.text) // 4,
            output_tokens=3, truncated=False, backend=EngineName.ONNX_CPU, model="fake:1", batch_size=len(jobs),
            queue_wait_ms=0.0, generate_ms=1.0, padding_share=0.0)) for job in jobs]


def run(generation, dialogues):
    return asyncio.run(Flow(generation).run(dialogues, Call("fake:1", SETTINGS, "/summarize_batch")))


def turns(n: int, start: int = 0) -> str:
    return "\n".join(f"P{i}: I have something to say about topic {i}, and it takes a while to say." for i in
                     range(start, start + n))


def test_every_window_of_every_dialogue_goes_in_one_call_and_the_summaries_join_in_order(tokenizer):
    backend = RecordingBackend()
    generation = LongDialogues(Router(Backend(BackendName.ONNX, backend), None, 5.0), tokenizer,
                               LongDialogueSettings(window_tokens=60, long_from_tokens=60), context_tokens=1024)
    short, long = turns(2), turns(12, start=10)
    first, second = run(generation, [short, long])
    [call] = backend.calls
    assert all(job.settings == SETTINGS for job in call)  # the request's settings, for every window
    assert call[0].text == short
    assert len(call) == 1 + second.long_dialogue.windows
    assert first.long_dialogue is None and first.summary == "P0 spoke."
    info = second.long_dialogue
    assert info.windows > 3 and info.rounds == 1 and info.window_tokens == 60
    assert info.generations == info.windows and info.generated_tokens == 3 * info.windows
    # the windows start at turns, in order: each window summary names its first speaker
    firsts = [job.text.split()[0].rstrip(":") for job in call[1:]]
    assert firsts == sorted(firsts, key=lambda p: int(p[1:])) and firsts[0] == "P10"
    assert second.summary == " ".join(f"{p} spoke." for p in firsts)
    assert second.truncated is False
    assert second.input_tokens == sum(len(job.text) // 4 for job in call[1:])
    assert second.output_tokens == 3 * info.windows


def test_a_join_longer_than_the_target_is_summarized_again(tokenizer):
    backend = RecordingBackend()
    generation = LongDialogues(Router(Backend(BackendName.ONNX, backend), None, 5.0), tokenizer,
                               LongDialogueSettings(
                                   window_tokens=60, long_from_tokens=60, summary_tokens=10, max_rounds=3),
                               context_tokens=1024)
    [summary] = run(generation, [turns(16)])
    info = summary.long_dialogue
    first_round, second_round = backend.calls  # one call per round, for all the dialogue's windows
    assert len(first_round) == info.windows > 3
    # the window summaries, one per line, fit one window: summarized to 3 tokens, within the target
    [job] = second_round
    assert job.text == "\n".join(f"{j.text.split()[0].rstrip(':')} spoke." for j in first_round)
    assert (info.rounds, info.generations, info.generated_tokens) == (2, info.windows + 1, 3 * (info.windows + 1))
    assert (summary.summary, summary.output_tokens) == ("P0 spoke.", 3)
    assert summary.input_tokens == sum(len(j.text) // 4 for j in first_round)  # the dialogue's, not the rounds' 


def test_rounds_stop_at_the_bound(tokenizer):
    backend = RecordingBackend()
    generation = LongDialogues(Router(Backend(BackendName.ONNX, backend), None, 5.0), tokenizer,
                               LongDialogueSettings(
                                   window_tokens=60, long_from_tokens=60, summary_tokens=16, max_rounds=1),
                               context_tokens=1024)
    [summary] = run(generation, [turns(30)])
    assert len(backend.calls) == 1 and summary.long_dialogue.rounds == 1
    assert summary.output_tokens > 16  # longer than the target, but no more rounds allowed


def test_switched_off_every_dialogue_is_one_job_as_before(tokenizer):
    backend = RecordingBackend()
    generation = LongDialogues(Router(Backend(BackendName.ONNX, backend), None, 5.0), tokenizer, None,
                               context_tokens=1024)
    summaries = run(generation, [turns(2), turns(40)])
    assert [len(c) for c in backend.calls] == [2]
    assert all(s.long_dialogue is None for s in summaries)


def test_a_dialogue_up_to_long_from_tokens_is_read_whole_a_longer_one_in_windows(tokenizer):
    backend = RecordingBackend()
    settings = LongDialogueSettings(window_tokens=60, long_from_tokens=200)
    generation = LongDialogues(Router(Backend(BackendName.ONNX, backend), None, 5.0), tokenizer, settings, 1024)
    whole, long = turns(8), turns(16)
    assert 60 < tokens(tokenizer, whole) <= 200 < tokens(tokenizer, long)
    first, second = run(generation, [whole, long])
    assert first.long_dialogue is None and backend.calls[0][0].text == whole  # one job, as it is
    assert second.long_dialogue.windows > 3 and all(tokens(tokenizer, job.text) <= 60 for job in backend.calls[0][1:])
    # never past the model's context: a dialogue the engine would cut is read in windows
    backend.calls.clear()
    [third] = run(LongDialogues(Router(Backend(BackendName.ONNX, backend), None, 5.0), tokenizer, settings, 100),
                  [whole])
    assert third.long_dialogue.windows > 1


def test_the_input_inspections_count_is_reused_so_a_dialogue_is_tokenized_once(tokenizer):
    encoded: list[str] = []

    class Recording:  # the model's tokenizer, recording what it is asked to encode
        def encode(self, texts):
            encoded.extend(texts)
            return tokenizer.encode(texts)

    class Inspection(Step):  # what InputInspection leaves in item.facts
        async def before(self, items, call):
            for item in items:
                item.facts["input_tokens"] = tokens(tokenizer, item.dialogue)

    backend = RecordingBackend()
    generation = LongDialogues(Router(Backend(BackendName.ONNX, backend), None, 5.0), Recording(),
                               LongDialogueSettings(window_tokens=60, long_from_tokens=200), 1024)
    whole, long = turns(8), turns(16)
    encoded.clear()
    first, second = asyncio.run(Flow(generation, [Inspection()]).run(
        [whole, long], Call("fake:1", SETTINGS, "/summarize_batch")))
    assert first.long_dialogue is None and backend.calls[0][0].text == whole
    assert second.long_dialogue.windows > 3
    assert whole not in encoded and long not in encoded  # neither dialogue counted again, whole
    # without the inspection's count (no such step), the dialogue is counted here
    run(generation, [whole])
    assert whole in encoded


def test_a_window_never_exceeds_the_model_context(tokenizer):
    backend = RecordingBackend()
    generation = LongDialogues(Router(Backend(BackendName.ONNX, backend), None, 5.0), tokenizer,
                               LongDialogueSettings(window_tokens=4096), context_tokens=100)
    [summary] = run(generation, [turns(20)])
    assert summary.long_dialogue.window_tokens == 100
    assert all(tokens(tokenizer, job.text) <= 100 for job in backend.calls[0])


def test_the_settings_and_the_switch():
    from serving.config import ServingConfig

    assert ServingConfig.load({}).long_dialogue == LongDialogueSettings(window_tokens=320, long_from_tokens=384,
                                                                        summary_tokens=2048,
                                                                        max_rounds=3)
    assert ServingConfig.load({"SUMMARIZER_LONG_DIALOGUES": "false"}).long_dialogue is None
    chosen = ServingConfig.load({"SUMMARIZER_LONG_WINDOW_TOKENS": "300", "SUMMARIZER_LONG_MAX_ROUNDS": "1"})
    assert (chosen.long_dialogue.window_tokens, chosen.long_dialogue.max_rounds) == (300, 1)
    with pytest.raises(ValueError, match="SUMMARIZER_LONG_WINDOW_TOKENS='8'"):
        ServingConfig.load({"SUMMARIZER_LONG_WINDOW_TOKENS": "8"})


def test_the_primary_timeout_grows_with_the_windows_per_dialogue(tokenizer):
    from serving.routing import BackendUnavailable

    backend = RecordingBackend()

    async def slow(jobs):  # 0.5 s for any call: longer than the primary timeout of one dialogue's job
        await asyncio.sleep(0.5)
        return await backend(jobs)

    router = Router(Backend(BackendName.ONNX, slow), None, primary_timeout_s=0.2)
    long = turns(24)
    [summary] = run(LongDialogues(router, tokenizer, LongDialogueSettings(window_tokens=60, long_from_tokens=60), 1024),
                       [long])
    assert summary.long_dialogue.windows >= 8  # 8 windows for one dialogue: 1.6 s for the call
    with pytest.raises(BackendUnavailable, match="no answer within 0.2s"):
        run(LongDialogues(router, tokenizer, None, 1024), [long])  # one job: the router's own timeout


@pytest.mark.parametrize("window_tokens", [96, 256])
def test_packing_by_adding_counts_is_packing_by_counting_windows(tokenizer, meeting, window_tokens):
    # BART's byte-level BPE never merges across a line break or a space: the sum of the units' counts is the
    # window's count, so the fast packing is the exact one
    splitter = WindowSplitter(token_counter(tokenizer), window_tokens)
    long_turn = "Ben: " + " ".join(f"Item {i} is late again, as it was last week." for i in range(60))
    for text in (meeting, meeting + "\n" + long_turn + "\nAnna: OK."):
        units = splitter.units(text)
        assert any(unit.continues for unit in units) or text == meeting  # pieces of a long turn too
        assert splitter._pack_by_sum(units, by_conversation=False) == splitter._pack_counting(units)


def test_a_tokenizer_that_merges_across_joins_still_gets_windows_that_fit():
    # a made-up count where joined texts are not the sum of their parts: the exact packing takes over
    def count(texts):
        return [2 + (len(t) + 3) // 4 for t in texts]

    dialogue = "\n".join(f"P{i}: {'word ' * (i % 7 + 1)}end." for i in range(60))
    windows = WindowSplitter(count, 30).split(dialogue)
    assert len(windows) > 5 and all(count([w.text])[0] <= 30 for w in windows)
    assert [line for w in windows for line in w.text.split("\n")] == dialogue.split("\n")


def test_the_long_dialogue_settings_are_part_of_every_cache_key():
    from cache.keys import answer_context, cache_key
    from serving.config import ServingConfig

    def key(**environ):
        return cache_key("m", SETTINGS, turns(30), answer_context(ServingConfig.load(environ)))

    assert len({key(), key(SUMMARIZER_LONG_WINDOW_TOKENS="300"), key(SUMMARIZER_LONG_DIALOGUES="false"),
                key(SUMMARIZER_LONG_FROM_TOKENS="300"),
                key(SUMMARIZER_LONG_SUMMARY_TOKENS="64"), key(SUMMARIZER_LONG_MAX_ROUNDS="1")}) == 6


def test_the_boundary_weights_are_part_of_every_cache_key_when_long_dialogues_are_on(monkeypatch, tmp_path):
    # new weights place a meeting's cuts elsewhere: its cached answers must not be served for them
    from cache.keys import answer_context
    from serving import conversation_boundaries
    from serving.config import ServingConfig

    import hashlib

    on, off = ServingConfig.load({}), ServingConfig.load({"SUMMARIZER_LONG_DIALOGUES": "false"})
    shipped = answer_context(on)["long_boundaries"]
    assert shipped == hashlib.sha256(conversation_boundaries.WEIGHTS_PATH.read_bytes()).hexdigest()
    assert "long_boundaries" not in answer_context(off)  # every dialogue one job: no cut to place
    retrained = tmp_path / "conversation_boundaries.json"
    retrained.write_bytes(b'{"weights": {"bias": -2.0}}')
    monkeypatch.setattr(conversation_boundaries, "WEIGHTS_PATH", retrained)
    conversation_boundaries.shipped_sha256.cache_clear()
    try:
        assert answer_context(on)["long_boundaries"] == hashlib.sha256(retrained.read_bytes()).hexdigest() != shipped
    finally:
        conversation_boundaries.shipped_sha256.cache_clear()
