"""Jobs that tell the truth, and a prompt lab that opens where the collection is.

A learn job reports progress per group and per cross-validation fold, then per chunk relabeled,
so its bar moves while it works; the lab opens on the collection's prompt set and main group,
and changing the group on its pick form never 404s. Real collection, real learning, real app.
"""

from __future__ import annotations

import re

from labeler.core import fewshot
from labeler.core.prompts import load_prompt_set
from labeler.review import jobs, overview
from labeler.store.catalog import Job
from tests.web.conftest import Users, login
from tests.web.test_web_learning import review_concept_as_truth


class RecordedProgress(jobs.Progress):
    """The real job row's progress, with every value and message it was set to kept in order."""

    def __init__(self, collection, job_id):
        super().__init__(collection, job_id)
        self.seen: list[tuple[int, int | None, str | None]] = []

    def set(self, done=None, total=None, message=None) -> None:
        super().set(done, total, message)
        self.seen.append((self.done, self.total, message))


def test_a_learn_job_moves_per_group_and_per_fold(app, web_build):
    collection = app.extensions["labeler"]
    review_concept_as_truth(collection, web_build.images, per_option=4)
    with collection.session() as s:
        job = Job(kind=jobs.LEARN_AND_RELABEL, status="running", done=0)
        s.add(job)
        s.flush()
        job_id = job.id
        groups = len(overview.ordered_groups(s))
    recorder = RecordedProgress(collection, job_id)

    result, summary = jobs.learn_and_relabel(collection, recorder, {})

    assert result["learn"]["concept"]["reviewed"] > 0 and summary.startswith("learned ")
    dones = [done for done, _, _ in recorder.seen]
    total = recorder.seen[-1][1]
    assert total == groups * (fewshot.FOLDS + 1) + 1  # 60 images: one chunk of one prompt set
    assert dones == sorted(dones), "progress never goes backwards"
    assert dones[-1] == total
    # The reviewed group is cross-validated, and the bar moves at each of its folds.
    folds = [m for _, _, m in recorder.seen if m and re.match(r"learning from reviews: concept, fold \d+ of \d+", m)]
    assert len(folds) >= 2, recorder.seen
    assert len(set(dones)) >= groups + 2, dones  # every group, each concept fold, the relabeling
    # The relabel counts its images, then names its finishing step instead of sitting at 100%.
    messages = [m for _, _, m in recorder.seen if m]
    counted = [i for i, m in enumerate(messages) if re.search(r"^relabeling with workshop v\d+: 60 of 60 images$", m)]
    assert counted and messages[-1].endswith(": queue order and indexes"), messages[-4:]
    assert counted[-1] < len(messages) - 1
    with collection.session() as s:
        row = s.get(Job, job_id)
        assert (row.done, row.total) == (total, total)


def test_the_lab_opens_on_the_collections_prompt_set_and_main_group(client):
    login(client, Users.admin)
    html = client.get("/lab").get_data(as_text=True)
    workshop = load_prompt_set("workshop")
    main = next(iter(workshop.groups))
    assert re.search(r'<option value="workshop" selected>', html), "the set the labels were made with"
    assert re.search(rf'<option value="{main}" selected>', html), "the prompt set's first group"


def test_changing_the_group_on_the_pick_form_opens_that_groups_first_option(client):
    login(client, Users.admin)
    workshop = load_prompt_set("workshop")
    first, other = list(workshop.groups)[:2]
    option = workshop.group(first).option_names[0]
    assert option not in workshop.group(other).option_names
    # The pick form as the browser sends it after the group was changed: the old group's option.
    response = client.get(f"/lab?set=workshop&group={other}&option={option}&shown_group={first}")
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    html = response.get_data(as_text=True)
    assert f'<option value="{workshop.group(other).option_names[0]}" selected>' in html
    # A hand-written link to an option the group lacks is still a clear 404.
    assert client.get(f"/lab?set=workshop&group={other}&option={option}").status_code == 404


def test_a_first_label_job_counts_both_passes_and_names_the_finishing_step(indexed_collection):
    # A first run scores every image ahead of the labeling pass, then builds the queue order and
    # indexes: the job's bar covers both passes without going back, and its message names each.
    collection = indexed_collection
    with collection.session() as s:
        job = Job(kind="label", status="running", done=0)
        s.add(job)
        s.flush()
        job_id = job.id
        images = collection.vectors.count(s, collection.models.require_id(s))
    recorder = RecordedProgress(collection, job_id)

    result, summary = jobs.label(collection, recorder, {"prompt_set": "workshop"})

    assert result["ranked_ahead"] and summary.startswith("Labeled with workshop")
    dones = [done for done, _, _ in recorder.seen]
    assert dones == sorted(dones), "progress never goes backwards"
    assert (dones[-1], recorder.seen[-1][1]) == (2 * images, 2 * images)  # both passes counted
    messages = [m for _, _, m in recorder.seen if m]
    scoring = [m for m in messages if ": scoring ahead, " in m]
    labeling = [m for m in messages if re.search(rf": \d+ of {images} images$", m)]
    assert scoring and scoring[-1].endswith(f"scoring ahead, {images} of {images} images")
    assert labeling and labeling[-1].endswith(f": {images} of {images} images")
    assert messages.index(scoring[-1]) < messages.index(labeling[-1])  # scored first, then labeled
    assert messages[-1].endswith(": queue order and indexes")
    with collection.session() as s:
        row = s.get(Job, job_id)
        assert (row.done, row.total) == (2 * images, 2 * images)
