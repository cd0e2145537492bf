from alerts.models.alerts import Alert, AlertRule, AlertTransition, EvaluationLease
from alerts.models.channels import Delivery, DeliveryAttempt, NotificationChannel

__all__ = ["Alert", "AlertRule", "AlertTransition", "EvaluationLease"]
__all__ += ["Delivery", "DeliveryAttempt", "NotificationChannel"]
