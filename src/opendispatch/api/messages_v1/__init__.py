"""Vonage's Messages API v1 (`POST /v1/messages`), served on the Dispatch API's engine.

`models` (the request's structure and OpenAPI schema), `validation` (the channel rules, v1's
names for invalid fields), `translate` (a v1 message as a workflow step), `problems` (v1's
error types and titles), `routes` (the endpoint).
"""
