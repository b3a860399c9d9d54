"""A two-task KFP pipeline of tiny lightweight components, for tests of the local run view.

No `from __future__ import annotations` here: KFP reads the components' annotations as real types.
"""

from kfp import dsl


def view_pipeline(fail: bool):

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def make(n: int, out: dsl.Output[dsl.Dataset]) -> None:
        import sys

        print("making", n, "rows")
        for i in range(1, 3):
            print(f"make: {50 * i}%|#####     | {i}/2 [00:00<00:00]", file=sys.stderr)
        with open(out.path, "w") as fh:
            fh.write("x" * n)
        out.metadata["rows"] = n

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def use(data: dsl.Input[dsl.Dataset], fail: bool) -> None:
        print("using", data.path)
        if fail:
            raise ValueError("deliberate failure for the test")

    @dsl.pipeline(name="view-test")
    def pipe(n: int = 3) -> None:
        first = make(n=n).set_display_name("sampling")
        use(data=first.outputs["out"], fail=fail).set_display_name("consumer")

    return pipe
