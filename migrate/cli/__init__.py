"""The ``billmig`` command line: the click group, the one place errors are caught, the console.

Only this package imports click and rich.
"""
