"""Which packages the client wheel ships: `agentstore.client` and the contract's generated
stubs, `agentstore.v1`. The stubs are generated once, into the repository's generated/ folder
(`python tools/codegen.py`); src/agentstore/v1 is a symbolic link to them, so an editable
install and a wheel both find them here. `agentstore` is a namespace package shared with the
server distribution: neither ships an `agentstore/__init__.py`."""

from setuptools import find_namespace_packages, setup

setup(
    package_dir={"": "src"},
    packages=find_namespace_packages(
        "src", include=["agentstore", "agentstore.*"], exclude=["*.__pycache__"]
    ),
)
