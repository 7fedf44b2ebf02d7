"""Which packages the wheel ships; everything else about the build is in pyproject.toml.

The Python package `agentstore` merges two roots: the server in src/agentstore and the
generated contract stubs in generated/agentstore/v1, so that `import agentstore.v1` finds the
stubs in an installed wheel. For a source checkout, src/agentstore/__init__.py extends the
package path the same way; this file and that one are the only two places that know of the
split. Packages are found, not listed: a hand-written list once left out `agentstore.live`,
and the installed server did not start.
"""

from setuptools import find_namespace_packages, setup

setup(
    package_dir={"": "src", "agentstore.v1": "generated/agentstore/v1"},
    packages=[
        *find_namespace_packages(
            "src", include=["agentstore", "agentstore.*"], exclude=["*.__pycache__"]
        ),
        "agentstore.v1",
    ],
)
