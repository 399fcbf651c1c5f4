"""Pricing the rows of a prediction request, shared by every route that prices (`/predict`, the
Open Inference Protocol's `/v2/.../infer`): choose the served version, check the rows with its
rules, answer repeated rows from the cache, price the rest through the micro-batcher and the
model server. `pipeline.price_request` is the one entry point; it returns a `PricedRequest`,
the single place where a request's served version and prices are known."""
