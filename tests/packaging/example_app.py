"""A user's FastAPI app, as the README shows it: two lines of rate limiting."""

from typing import Annotated

from fastapi import Depends, FastAPI

from ratelimit_client import Decision
from ratelimit_client.fastapi import RateLimit, client_ip, rate_limit_lifespan

app = FastAPI(lifespan=rate_limit_lifespan())
Limited = Annotated[Decision, Depends(RateLimit(policy="default", key=client_ip))]


@app.get("/items")
async def items(decision: Limited) -> dict[str, int]:
    return {"remaining": decision.remaining}
