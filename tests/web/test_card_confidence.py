"""A card says the model's confidence in the value it shows: after a correction, the corrected
value's own confidence, never that of the proposal it replaced (issue 28: "mug 0.53 corrected ·
model: book", where 0.53 was book's)."""

from __future__ import annotations

from tests.web.conftest import Users, login, post_json


def test_a_corrected_card_shows_the_corrected_values_own_confidence(client):
    csrf = login(client, Users.reviewer)
    label = client.get("/api/labels?group=concept&limit=1&sort=id").get_json()["labels"][0]
    # The option the model liked least: its confidence is far from the proposal's.
    other = min((o for o in label["options"] if o != label["value"]), key=lambda o: label["scores"][o]["confidence"])
    answer = post_json(client, f"/api/labels/{label['id']}/review",
                       {"action": "correct", "value": other, "version": label["version"]}, csrf).get_json()
    card = answer["card"]
    assert card["value"] == other and card["predicted"] == label["predicted"]
    assert card["confidence"] == round(label["scores"][other]["confidence"], 2)
    assert card["confidence"] != round(label["confidence"], 2)
    assert other not in [option for option, _ in card["others"]]
    assert label["predicted"] in [option for option, _ in card["others"]]  # the model's pick, with its own score

    typed = post_json(client, f"/api/labels/{label['id']}/review",
                      {"action": "correct", "value": "a value no prompt names", "version": label["version"] + 1},
                      csrf).get_json()["card"]
    assert typed["confidence"] is None  # the model never scored it: no number to show
    polled = client.get(f"/api/review/cards?ids={label['id']}").get_json()["cards"][0]
    assert polled["confidence"] is None and polled["value"] == "a value no prompt names"
