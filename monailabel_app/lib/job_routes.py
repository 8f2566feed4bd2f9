"""GET / DELETE /samus/jobs/<job>: progress of a propagation that named itself (`"job": "<id>"` in its
params), and cancelling it. A cancelled propagation stops at its next batch and answers 409."""
import re

from fastapi import Depends, HTTPException

JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def add_job_routes(asgi_app, scheduler) -> None:
    from monailabel.config import settings
    from monailabel.endpoints.user.auth import RBAC

    def find(job_id: str):
        if not JOB_ID.fullmatch(job_id):
            raise HTTPException(400, f"job id {job_id[:60]!r} is not 1-64 letters, digits, - or _")
        job = scheduler.tracked(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r} (unknown, or finished long ago)")
        return job

    def progress(job):
        return {"job": job.job_id, "state": job.state, "frames_done": job.done, "frames_total": job.total,
                "batches": len(job.holdings)}

    def get_job(job_id: str):
        return progress(find(job_id))

    def cancel_job(job_id: str):
        job = find(job_id)
        if job.state in ("queued", "running"):
            job.cancel()
        return progress(job)

    user = [Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))]
    prefix = (settings.MONAI_LABEL_API_STR or "") + "/samus/jobs/{job_id}"
    asgi_app.add_api_route(prefix, get_job, methods=["GET"], dependencies=user, tags=["SAMUS"],
                           summary="Progress of a named propagation")
    asgi_app.add_api_route(prefix, cancel_job, methods=["DELETE"], dependencies=user, tags=["SAMUS"],
                           summary="Cancel a named propagation (it stops at its next batch)")
