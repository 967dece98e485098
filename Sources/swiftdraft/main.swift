print("swiftdraft")
