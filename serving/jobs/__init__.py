"""Training jobs: put on Redis by the proxy, executed by `python -m serving.worker`.

- queue.py: the Redis connection, the training queue, enqueueing and fetching jobs (the API side);
- status.py: a job as /job_status reports it;
- abandoned.py: failing jobs whose worker died without a word (heartbeats stopped);
- training.py: the one job function, run by the worker, that runs the Project's `main`;
- output.py: capturing a training's console output while forwarding it to the worker's log.

RQ only ever imports the fixed job function: a request chooses parameters, never code. Jobs are
stored with RQ's JSON serializer, so nothing read back from Redis is unpickled.
"""

# The job function is stored with each job under this package's name (queue.TRAINING_JOB), the
# name it has had since before the package was split: jobs queued by an older proxy still run.
from serving.jobs.training import run_training

__all__ = ["run_training"]
