"""What ships inside the logged model, and nothing else: row schema and rules, features, similar
listings, estimator storage, the pyfunc and its entry file.

This package is the model's only `code_paths`. In a deployed model it is imported as the top-level
package `model_runtime`, in an environment built from the model's own requirements.txt, so its
modules import each other relatively and import nothing from the rest of `valuation`, from serving,
steps or Hydra (tests/valuation/model_runtime checks both).
"""
