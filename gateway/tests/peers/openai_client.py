"""The official openai SDK as a client of Sluice's model routes.

Usage: openai_client.py BASE_URL API_KEY MODEL [DENIED_MODEL]
Prints one JSON object: what a non-streaming call, a streaming call (with
and without usage asked) and a call to a denied model looked like to the SDK.
"""

import json
import sys

import openai

base_url, api_key, model = sys.argv[1], sys.argv[2], sys.argv[3]
denied = sys.argv[4] if len(sys.argv) > 4 else None
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
out = {}

r = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "say hello"}]
)
out["text"] = r.choices[0].message.content
out["usage"] = r.usage.total_tokens if r.usage else None

for asked in (False, True):
    kwargs = {"stream_options": {"include_usage": True}} if asked else {}
    text, usage_chunks, chunks = "", 0, 0
    for chunk in client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        **kwargs,
    ):
        chunks += 1
        if chunk.usage is not None:
            usage_chunks += 1
        for c in chunk.choices:
            text += c.delta.content or ""
    out["stream_asked" if asked else "stream"] = {
        "text": text,
        "chunks": chunks,
        "usage_chunks": usage_chunks,
    }

out["models"] = sorted(m.id for m in client.models.list())

if denied:
    try:
        client.chat.completions.create(
            model=denied, messages=[{"role": "user", "content": "hi"}]
        )
        out["denied"] = "allowed"
    except openai.PermissionDeniedError as e:
        out["denied"] = type(e).__name__ + ":" + str(e.status_code)
    except openai.APIStatusError as e:
        out["denied"] = type(e).__name__ + ":" + str(e.status_code)

print(json.dumps(out))
