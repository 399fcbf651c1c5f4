"""GET /jobs, which the operator page polls: the training queue's recent jobs, newest first, each
as /job_status describes it, from the real Redis (a queue of its own per test)."""

from __future__ import annotations

from serving.jobs.queue import enqueue_training, redis_connection, training_queue


def test_recent_jobs_are_listed_newest_first_with_progress(client, auth, api_settings) -> None:
    queue = training_queue(redis_connection(api_settings), api_settings)
    first = enqueue_training(queue, model="lgbm", overrides="data=sample", experiment_name="one",
                             submitted_by="k1", settings=api_settings)
    second = enqueue_training(queue, model="gbr", overrides="data=sample", experiment_name="two",
                              submitted_by="k2", settings=api_settings)

    answer = client.get("/jobs", headers=auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["queue"] == api_settings.jobs.queue
    assert [job["job_id"] for job in body["jobs"]] == [second.id, first.id]
    newest = body["jobs"][0]
    assert newest["status"] == "queued"
    assert newest["progress"]["step"] == "queued"
    assert newest["description"] == "train model=gbr experiment=two"
    assert newest["submitted_by"] == "k2"
    assert [job["job_id"] for job in client.get("/jobs?limit=1", headers=auth).json()["jobs"]] \
        == [second.id]


def test_jobs_need_a_key_and_refuse_a_bad_limit(client, auth) -> None:
    assert client.get("/jobs").status_code == 401
    refused = client.get("/jobs?limit=0", headers=auth)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["field"] == "limit"
