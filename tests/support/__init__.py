"""Plumbing shared by the test areas that need real processes and sockets on 127.0.0.1:
``serve`` (a restartable ``stepstone serve`` subprocess, an in-process uvicorn, free ports) and
``proxy`` (a TCP proxy that cuts connections). No test logic and no fixtures live here."""
