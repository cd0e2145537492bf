from alerts.models.alerts import Alert, AlertRule, AlertTransition, EvaluationLease

__all__ = ["Alert", "AlertRule", "AlertTransition", "EvaluationLease"]
