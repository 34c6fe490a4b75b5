"""``deepke-llm serve``: the extractor over HTTP (REST API, web page, batch jobs).

Needs the ``[serve]`` extra (FastAPI, uvicorn, python-multipart, prometheus-client); import
:func:`deepke_llm.serve.app.create_app` to build the app around a loaded backend.
"""
