"""The one exception type users see for bad input: it names the file or key and what to do."""


class OuroborosError(Exception):
    """Bad input (config key, file, shape, missing weights): the message says what to fix."""
