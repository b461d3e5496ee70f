"""The configuration: the typed schema of every group, the rules types cannot express, the resolvers, and
the values derived from a config.

Beside the data path rather than on it: every sub-package may import it, and it imports only
`simclr.errors`.
"""
