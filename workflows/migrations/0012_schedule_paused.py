from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("workflows", "0011_consumer_counts"),
    ]

    operations = [
        migrations.AddField(
            model_name="schedule",
            name="paused",
            field=models.BooleanField(default=False),
        ),
    ]
