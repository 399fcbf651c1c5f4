"""The logged model's entry file ("models from code"): MLflow stores this file with the model and
runs it at load time instead of unpickling a Python object. MLflow puts the model's code directory
on sys.path first, so `model_runtime` is the copy that ships with the model."""

from mlflow.models import set_model
from model_runtime.pyfunc import ValuationModel

set_model(ValuationModel())
