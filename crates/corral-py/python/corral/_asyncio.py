"""The completion side of ``Model.infer_async``: runs on the future's own event loop."""


def resolve(future, result, error):
    """Sets the future's result or exception, unless it was cancelled meanwhile."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
