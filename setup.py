"""Which packages the server wheel ships: every package under src/, found, not listed (a
hand-written list once left out `agentstore.live`, and the installed server did not start).

`agentstore` is a namespace package shared with the client distribution (clients/python),
which ships `agentstore.client` and the generated stubs `agentstore.v1`; neither distribution
has an `agentstore/__init__.py`.
"""

from setuptools import find_namespace_packages, setup

setup(
    package_dir={"": "src"},
    packages=find_namespace_packages(
        "src", include=["agentstore", "agentstore.*"], exclude=["*.__pycache__"]
    ),
)
