"""The facade's wiring, one module per command: what :mod:`tinyllm.api` delegates to.

``distill`` has none: :func:`tinyllm.api.distill` builds the stage's
``DistillOptions.sized`` and calls its recipe directly.

Each module joins a stage (distill, compress, runtime) to the core for one public
function: it checks the arguments, builds the stage's options, calls the stage and
assembles what the API returns. It sits between the API and the stages in the import
contract (cli > api > facade > stages > core), so no stage can reach up into it.
"""
