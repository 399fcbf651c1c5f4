"""The logged model's entry file ("models from code"): MLflow stores this file with the model and
runs it at load time instead of unpickling a Python object."""

from mlflow.models import set_model

from valuation.pyfunc import ValuationModel

set_model(ValuationModel())
