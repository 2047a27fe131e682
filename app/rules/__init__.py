"""The decision rules of SPEC section 3: plain values in, plain values out.

Nothing in this package imports Kafka or Faust, so the worker, the audit
replay and the tests all judge with the same code.
"""
