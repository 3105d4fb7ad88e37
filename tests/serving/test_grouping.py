"""group_by_settings_and_length: which jobs an engine generates together in one generate() call."""

from __future__ import annotations

import random

import pytest

from serving.engines import EncodedJob, group_by_settings_and_length
from serving.protocol import GenerationSettings

BEAMS4 = GenerationSettings(num_beams=4, max_new_tokens=64, min_new_tokens=0, length_penalty=1.0,
                            no_repeat_ngram_size=3)
GREEDY = BEAMS4.model_copy(update={"num_beams": 1})
SHORT = BEAMS4.model_copy(update={"max_new_tokens": 8})


def jobs(lengths: list[int], settings: GenerationSettings = BEAMS4, start: int = 0) -> list[EncodedJob]:
    return [EncodedJob(index=start + i, ids=[5] * n, truncated=False, settings=settings, enqueued_at=0.0)
            for i, n in enumerate(lengths)]


def lengths(groups: list[list[EncodedJob]]) -> list[list[int]]:
    return [[len(job.ids) for job in group] for group in groups]


def padding_share(group: list[EncodedJob]) -> float:
    longest = max(len(job.ids) for job in group)
    return 1.0 - sum(len(job.ids) for job in group) / (longest * len(group))


def test_no_jobs_no_groups():
    assert group_by_settings_and_length([]) == []


def test_similar_lengths_form_one_group_sorted_by_length():
    groups = group_by_settings_and_length(jobs([12, 10, 11, 12]))
    assert lengths(groups) == [[10, 11, 12, 12]]


def test_a_group_is_cut_before_padding_would_pass_the_share():
    # Adding the 20 to three 10s would make 30 of 80 padded tokens padding (0.375 > 0.25).
    assert lengths(group_by_settings_and_length(jobs([10, 20, 10, 10]))) == [[10, 10, 10], [20]]
    # Up to the share is allowed: three 15s and a 20 pad 15 of 80 (0.1875).
    assert lengths(group_by_settings_and_length(jobs([15, 15, 20, 15]))) == [[15, 15, 15, 20]]
    # A looser share keeps the first example together.
    assert lengths(group_by_settings_and_length(jobs([10, 20, 10, 10]), max_padding_share=0.4)) == [[10, 10, 10, 20]]


def test_a_group_is_cut_before_its_padded_tokens_times_beams_pass_the_budget():
    # 4 beams x 100 tokens = 400 per job: a budget of 1,000 holds two jobs of 100, not three.
    groups = group_by_settings_and_length(jobs([100] * 5), max_group_tokens=1_000)
    assert lengths(groups) == [[100, 100], [100, 100], [100]]
    greedy = group_by_settings_and_length(jobs([100] * 5, GREEDY), max_group_tokens=1_000)
    assert lengths(greedy) == [[100] * 5], "one beam: five jobs of 100 fit in 1,000 tokens"


def test_a_single_job_over_the_budget_still_gets_a_group():
    assert lengths(group_by_settings_and_length(jobs([1_024]), max_group_tokens=100)) == [[1_024]]


def test_settings_are_never_mixed_in_a_group():
    mixed = jobs([10, 10], BEAMS4) + jobs([10, 10], GREEDY, start=2) + jobs([10], SHORT, start=4)
    random.Random(1).shuffle(mixed)
    groups = group_by_settings_and_length(mixed)
    assert len(groups) == 3
    assert all(len({job.settings for job in group}) == 1 for group in groups)
    assert sorted(len(group) for group in groups) == [1, 2, 2]


@pytest.mark.parametrize("seed", range(20))
def test_every_job_appears_once_and_every_group_keeps_its_promises(seed):
    rng = random.Random(seed)
    settings = [BEAMS4, GREEDY, SHORT]
    batch = [EncodedJob(index=i, ids=[5] * rng.randint(1, 1_024), truncated=False, settings=rng.choice(settings),
                        enqueued_at=0.0) for i in range(rng.randint(1, 64))]
    max_share, budget = rng.choice([0.1, 0.25, 0.5]), rng.choice([4_096, 32_768])
    groups = group_by_settings_and_length(batch, max_padding_share=max_share, max_group_tokens=budget)
    assert sorted(job.index for group in groups for job in group) == list(range(len(batch)))
    for group in groups:
        assert len({job.settings for job in group}) == 1
        sizes = [len(job.ids) for job in group]
        assert sizes == sorted(sizes)
        if len(group) > 1:
            assert padding_share(group) <= max_share + 1e-9
            assert max(sizes) * len(group) * group[0].settings.num_beams <= budget
