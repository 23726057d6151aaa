"""The facade's wiring, one module per command: what :mod:`tinyllm.api` delegates to.

Each module joins a stage (distill, compress, runtime) to the core for one command and
holds its public function (re-exported by :mod:`tinyllm.api`, with its signature and
docstring): it checks the arguments, builds the stage's options, calls the stage and
assembles what the API returns. The stage is imported when the function is called.
The facade sits between the API and the stages in the import contract
(cli > api > facade > stages > core), so no stage can reach up into it.
"""
