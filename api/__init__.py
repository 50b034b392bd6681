"""The demo API replicas: the proof of concept's endpoints behind the rate-limit dependency,
built only on ``ratelimit_client``'s public API (see ``api.main``). Not packaged: the API
image copies this folder and runs ``python -m api``."""
