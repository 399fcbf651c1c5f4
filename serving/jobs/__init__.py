"""Training jobs: put on Redis by the proxy, executed by `python -m serving.worker`.

- queue.py: the Redis connection, the training queue, enqueueing and fetching jobs (the API side);
- status.py: a job as /job_status reports it;
- abandoned.py: failing jobs whose worker died without a word (heartbeats stopped);
- training.py: the one job function, run by the worker, that runs the Project's `main`;
- output.py: capturing a training's console output while forwarding it to the worker's log.

RQ only ever imports the fixed job function: a request chooses parameters, never code. Jobs are
stored with RQ's JSON serializer, so nothing read back from Redis is unpickled.
"""

# Each job stores the name of its function, which the worker imports: `serving.jobs.run_training`
# (queue.TRAINING_JOB) is a stable name, so jobs already queued keep running when the code moves
# between modules.
from serving.jobs.training import run_training

__all__ = ["run_training"]
